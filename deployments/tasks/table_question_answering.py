"""table-question-answering: ``{answer, coordinates, cells, aggregator}`` for a question about a
table.

The body is ``{"inputs": {"query": str, "table": {column: [cell, ...], ...}}, "parameters":
{"padding"?, "sequential"?, "truncation"?}}`` (older clients sent ``query`` and ``table`` at
the top level). Cells are read as text, as TAPAS reads them; a table larger than the model's
input loses rows from its end unless ``truncation`` is false (then it is a 400, as is a table with
more columns than the model numbers).
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationInfo,
                      field_validator)
from pydantic_core import PydanticCustomError

from deployments.backends.base import Head

from . import register_task
from ._params import Flag, Params, limits_of
from ._pipeline import call_pipeline
from .base import Payload, Task, TaskRequest

Cell = Union[StrictStr, StrictInt, StrictFloat, StrictBool, None]


class TableInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: StrictStr = Field(min_length=1)
    table: dict[StrictStr, list[Cell]]

    @field_validator("table")
    @classmethod
    def _rectangular(cls, table: dict, info: ValidationInfo) -> dict:
        if not table:
            raise PydanticCustomError("table_shape", "the table has no columns")
        lengths = {len(cells) for cells in table.values()}
        if len(lengths) != 1 or 0 in lengths:
            raise PydanticCustomError(
                "table_shape", "every column of the table must have the same number of cells (at least one)")
        bound = limits_of(info).max_table_cells
        cells = len(table) * lengths.pop()
        if cells > bound:
            raise PydanticCustomError(
                "table_too_large", "the table has {cells} cells, more than this server allows ({bound}, "
                "limits.max_table_cells)", {"cells": cells, "bound": bound})
        return {name: ["" if c is None else str(c) for c in column] for name, column in table.items()}


class Parameters(Params):
    padding: Optional[Literal["do_not_pad", "longest", "max_length"]] = None
    sequential: Optional[Flag] = None
    truncation: Optional[StrictBool] = None


class Request(TaskRequest):
    inputs: TableInput
    parameters: Parameters = Parameters()


@register_task("table-question-answering")
class TableQuestionAnswering(Task):
    # NOTE(hubserve): optimum exports no TAPAS head: torch only.
    head = Head("table-question-answering", "AutoModelForTableQuestionAnswering")
    pipeline = "table-question-answering"
    native_architectures = ("TapasForQuestionAnswering",)
    loads_architectures = native_architectures
    infer_priority = 15
    request_model = Request

    def request_data(self, payload: Payload) -> dict:
        inputs = payload.inputs
        if inputs is None and ("query" in payload.extra or "table" in payload.extra):
            inputs = {k: payload.extra.get(k) for k in ("query", "table")}
        return {"inputs": inputs, "parameters": payload.parameters}

    def run_one(self, model, request):
        params = request.parameters.known()
        # NOTE(hubserve): TAPAS's own word for dropping rows that do not fit is truncation=True.
        params.setdefault("truncation", True)
        out = call_pipeline(model.backend.forward, table=request.inputs.table, query=request.inputs.query, **params)
        result = {"answer": out["answer"], "coordinates": [[int(r), int(c)] for r, c in out["coordinates"]],
                  "cells": list(out["cells"])}
        if "aggregator" in out:
            result["aggregator"] = out["aggregator"]
        return result
