"""Domain errors of the service core; the API layer maps each to an HTTP status and one JSON error shape."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from training.errors import WdrecError

N_SUGGESTIONS = 3  # closest known names offered for each unknown one


def closest(name: str, known: Sequence[str]) -> list[str]:
    """The known names most like `name`, best first (what an unknown-name error suggests)."""
    return difflib.get_close_matches(name, known, n=N_SUGGESTIONS, cutoff=0.0)


class ServiceError(WdrecError):
    """A request the recommender cannot answer; `code` and `details` go to the client as they are."""

    code = "invalid_request"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class UnknownClientError(ServiceError):
    """The client ID is not in the loaded client table."""

    code = "unknown_client"

    def __init__(self, client_id: int) -> None:
        super().__init__(f"Client {client_id} not found", details={"client_id": client_id})


class UnknownLabelsError(ServiceError):
    """Some labels are not in the vocabulary; details list each with its closest known labels."""

    code = "unknown_labels"

    def __init__(self, suggestions: dict[str, list[str]]) -> None:
        names = ", ".join(suggestions)
        super().__init__(
            f"Unknown labels: {names}",
            details={"unknown": list(suggestions), "suggestions": suggestions},
        )


class UnknownCategoriesError(ServiceError):
    """Some top categories (CLAC1) named by a filter are not in the vocabulary; details list each with its
    closest known categories."""

    code = "unknown_clac1"

    def __init__(self, suggestions: dict[str, list[str]], *, fields: list[str]) -> None:
        super().__init__(
            f"Unknown CLAC1 categories in {' and '.join(fields)}: {', '.join(suggestions)}",
            details={"fields": fields, "unknown": list(suggestions), "suggestions": suggestions},
        )


class FilterConflictError(ServiceError):
    """Filters that contradict each other; details name the conflicting filters."""

    code = "filter_conflict"


class InvalidQueryError(ServiceError):
    """The request is well-formed but unusable: nothing to score, k out of range, an unknown age."""

    code = "invalid_query"


class ProductsUnavailableError(ServiceError):
    """Products were asked for, but the loaded version was trained before product tables existed."""

    code = "products_unavailable"

    def __init__(self, version: str) -> None:
        super().__init__(
            f"Model version {version} has no product tables: retrain it (wdrec train) to rank products",
            details={"version": version},
        )


class ExplanationsUnavailableError(ServiceError):
    """Explanations were asked for, but the loaded model was exported without the methods that give them."""

    code = "explanations_unavailable"

    def __init__(self, version: str) -> None:
        super().__init__(
            f"Model version {version} was exported before explanations existed: retrain it (wdrec train) to "
            "explain its rankings",
            details={"version": version},
        )


class NotReadyError(ServiceError):
    """No artifact set is loaded yet (or loading failed)."""

    code = "not_ready"

    def __init__(self) -> None:
        super().__init__("The model is not loaded yet")


class SessionConflictError(ServiceError):
    """The client already has a session with this ID, recorded with another body."""

    code = "session_conflict"

    def __init__(self, client_id: int, session_id: str, stored: Any) -> None:
        super().__init__(
            f"Client {client_id} already has a session {session_id!r} with another body",
            details={"stored": stored},
        )


class UnknownProductsError(ServiceError):
    """Some PD_C codes are not in the loaded catalogue, or their CLAC3 is not a label the model scores
    (`without_label`)."""

    code = "unknown_products"

    def __init__(self, products: list[int], *, without_label: list[int]) -> None:
        super().__init__(
            f"Unknown products: {', '.join(map(str, products))}",
            details={"unknown": products, "without_label": without_label},
        )


class StoreUnavailableError(ServiceError):
    """The database did not answer; nothing was recorded."""

    code = "database_unavailable"

    def __init__(self) -> None:
        super().__init__("The database is unavailable; try again")
