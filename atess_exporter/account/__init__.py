"""The account's topology: plants, dataloggers and the devices on each, as the API lists them."""
