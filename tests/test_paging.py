"""The one paged-list reader (discovery's lists, backfill's history): its stop rules,
its page cap and its call budget, on answers no honest server sends."""

import logging

import pytest

from atess_exporter.api.client import MalformedResponseError, NoDataError
from atess_exporter.api.paging import CallBudget, pages, rows_of


class Pages:
    """A client whose answer to page n is answers[n - 1] (an exception is raised)."""

    def __init__(self, *answers):
        self.answers, self.calls = answers, []

    def get(self, path, params):
        self.calls.append(params["pageNo"])
        answer = self.answers[min(params["pageNo"], len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_null_page_is_an_empty_page_and_a_page_without_rows_is_an_error():
    assert rows_of("/p", {"datas": None, "total": 0}) == ([], 0)
    with pytest.raises(MalformedResponseError, match="neither an array nor a page object"):
        rows_of("/p", {"total": 3})
    with pytest.raises(MalformedResponseError, match="data.datas is str"):
        rows_of("/p", {"datas": "rows"})


@pytest.mark.parametrize("total", [True, "x", float("inf"), -1, 1e12])
def test_a_total_that_is_not_a_count_is_ignored(total):
    assert rows_of("/p", {"datas": [], "total": total}) == ([], None)


def test_a_bare_array_is_the_whole_list_even_when_full():
    client = Pages([{"a": 1}, {"a": 2}])
    assert list(pages(client, "/p", {}, 2)) == [{"a": 1}, {"a": 2}]
    assert client.calls == [1]


def test_no_data_on_a_later_page_ends_the_list():
    client = Pages({"datas": [1, 2]}, NoDataError("/p: success code but no data"))
    assert list(pages(client, "/p", {}, 2)) == [1, 2]
    assert client.calls == [1, 2]


def test_a_list_short_of_its_total_ends_and_says_so(caplog):
    client = Pages({"datas": [1, 2], "total": 10}, {"datas": [3], "total": 10})
    with caplog.at_level(logging.WARNING):
        assert list(pages(client, "/p", {}, 2, fields={"sn": "A"})) == [1, 2, 3]
    [record] = [r for r in caplog.records if "short of its total" in r.getMessage()]
    assert record.fields == {"sn": "A", "path": "/p", "rows": 3, "total": 10}


def test_the_call_budget_spans_lists_and_fails_the_list_that_exceeds_it():
    budget = CallBudget(3, "stopped after its call budget")
    assert list(pages(Pages({"datas": [1, 2]}, {"datas": [3]}), "/a", {}, 2, budget)) == [1, 2, 3]
    with pytest.raises(MalformedResponseError, match="/b: stopped after its call budget"):
        list(pages(Pages({"datas": [1, 2]}, {"datas": [3]}), "/b", {}, 2, budget))
