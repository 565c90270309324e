"""The review page: one static HTML file that says which extended tracks to listen to.

    await write_review_page("out/review.html", results=results)   # or journal="j.sqlite"

The page's making lives in `_review/`; this module is where users import it.
"""

from ._review.page import ReviewItem, items_from_journal, items_from_results, write_review_page

__all__ = ["ReviewItem", "items_from_journal", "items_from_results", "write_review_page"]
