"""Every bound of a request or a file, declared once (``limits:`` in the config), and request rates."""

from __future__ import annotations

import ipaddress
from typing import Optional

from pydantic import Field, field_validator

from .base import StrictModel

class RateLimit(StrictModel):
    """A fixed window: at most ``requests`` per ``window_s`` seconds."""

    requests: int = Field(..., ge=1)
    window_s: float = Field(..., gt=0)


class LimitsConfig(StrictModel):
    """Caps on what one request may ask for, and request rates."""

    max_inputs: int = Field(256, ge=1, description="inputs in one request (a list's length)")
    max_input_chars: int = Field(100_000, ge=1, description="characters of one input string")
    max_new_tokens: int = Field(
        1024, ge=1, description="tokens one generation may ask for, under every alias (max_new_tokens, max_length, "
                                "min_length, max_tokens, max_completion_tokens, generate_parameters.*)")
    max_num_beams: int = Field(8, ge=1, description="beams of one beam-search generation")
    max_return_sequences: int = Field(10, ge=1, description="sequences one generation may return (n)")
    max_top_k: int = Field(1000, ge=1, description="top_k of every task")
    max_stop_sequences: int = Field(4, ge=0, description="stop sequences of one generation")
    max_stop_chars: int = Field(128, ge=1, description="characters of one stop sequence")
    max_candidate_labels: int = Field(64, ge=1, description="candidate labels (or fill-mask targets) of one request")
    max_question_answering_tokens: int = Field(
        4096, ge=1, description="question-answering max_seq_len, max_question_len, max_answer_len and doc_stride")
    max_document_words: int = Field(
        10_000, ge=1, description="words (with their boxes) of one document-question-answering page")
    max_table_cells: int = Field(10_000, ge=1, description="cells of one table-question-answering table")
    max_inference_steps: int = Field(100, ge=1, description="denoising steps of one text-to-image request")
    max_output_pixels: int = Field(
        1024 * 1024, ge=64 * 64, description="pixels (width x height) of one generated image")
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="pixels (width x height) of one input image, checked before it is decoded")
    max_audio_seconds: float = Field(
        600.0, gt=0, description="seconds of one input audio; decoding stops just past it")
    ffmpeg_timeout_s: float = Field(
        60.0, gt=0, description="seconds ffmpeg may take to decode one input audio or encode one audio answer")
    max_template_seconds: float = Field(
        2.0, gt=0, description="seconds one rendering of a model's chat template may take (its process is then "
                               "stopped and the request refused)")
    max_template_chars: int = Field(
        1_000_000, ge=1, description="characters of the prompt a model's chat template renders")
    max_template_memory_bytes: int = Field(
        512 * 1024**2, ge=64 * 1024**2, description="address space of the process that renders chat templates")
    export_timeout_s: float = Field(
        1800.0, gt=0, description="seconds one ONNX export (with its fidelity gate) may take; past it the model "
                                  "serves on torch")
    export_memory_bytes: int = Field(
        16 * 1024**3, ge=1024**3, description="address space of the process that exports a model to ONNX")
    max_upload_bytes: int = Field(20 * 1024**3, ge=1024, description="size of one uploaded model archive")
    stop_grace_s: float = Field(
        10.0, gt=0, description="seconds Serve has to shut down when `hubserve serve` stops, before every process "
                                "the server started is stopped by PID")
    kill_grace_s: float = Field(
        2.0, gt=0, description="seconds a process of a stopping server has between SIGTERM and SIGKILL")
    max_model_json_bytes: int = Field(
        64 * 1024**2, ge=1024, description="size of one JSON file of a model (every one is parsed and checked; a "
                                           "larger one refuses the model); real tokenizer.json files reach 35 MB")
    max_repo_files: int = Field(
        10_000, ge=1, description="files of one model repo, entries of one archive, operations of one commit or "
                                  "preupload, paths of one paths-info request")
    max_path_part_bytes: int = Field(
        255, ge=1, le=255, description="UTF-8 bytes of one name in a repo path (a file or folder name)")
    max_path_bytes: int = Field(1024, ge=1, description="UTF-8 bytes of one whole repo path (a/b/c.json)")
    max_lfs_objects_in_flight: int = Field(
        10_000, ge=1, description="LFS objects one token may hold announced or uploaded but not yet committed")
    max_lfs_bytes_in_flight: int = Field(
        40 * 1024**3, ge=1, description="bytes of the LFS objects one token may hold announced or uploaded but not "
                                        "yet committed")
    lfs_unclaimed_ttl_s: float = Field(
        24 * 3600.0, gt=0, description="an uploaded LFS object no commit took is removed after this long")
    lfs_ticket_ttl_s: float = Field(
        3600.0, gt=0, description="how long an LFS upload URL the batch API hands out stays valid")
    max_form_bytes: int = Field(
        1024**2, ge=1024, description="bytes of one JSON or form body of the Hub routes (create, delete, settings, "
                                      "preupload, LFS batch, paths-info)")
    anonymous_rate: Optional[RateLimit] = Field(
        None, description="per client address, calls without a token (and failed authentications); "
                          "off unless set: a local server does not throttle its own user")
    token_rate: Optional[RateLimit] = Field(None, description="per token; off unless set")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="addresses and networks (CIDR) of the reverse proxies in front whose "
                                          "client_ip_header is believed: the client is the right-most address "
                                          "there that none of them added (empty: the socket's peer, always)")
    client_ip_header: str = Field(
        "x-forwarded-for", min_length=1, description="the header a trusted proxy appends the client address to")
    max_json_values: int = Field(
        200_000, ge=1, description="values (object members included) of one JSON request body, counted before "
                                   "it is parsed")
    inline_parse_bytes: int = Field(
        65_536, ge=0, description="a JSON request body larger than this is parsed and checked off the event loop "
                                  "(a worker thread)")
    redis_url: Optional[str] = Field(
        None, description="keep the rate-limit windows in this Redis, exact across replicas and pods (default: "
                          "each ingress replica counts what it sees)")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        # NOTE(hubserve): a malformed entry would trust nothing, silently: refused here instead.
        try:
            return [str(ipaddress.ip_network(entry.strip(), strict=False)) for entry in value]
        except ValueError as exc:
            raise ValueError(f"limits.trusted_proxies: {exc}") from None
