"""The fidelity gate: how close an export's answers must be to torch's before it serves.

Every engine that runs a model somewhere other than its transformers torch code (the ONNX
exports today) is checked against torch on a few sample inputs first, with the tolerances
defined here, once:

- ``cosine``: every output tensor, row by row (the flattened values of each batch row),
  must have a cosine similarity to torch's of at least ``min_cosine``. It is what
  embeddings are used for (similarity), and it ignores the scale noise of int8.
- ``max_abs``: every value within ``atol + rtol * |torch's value|`` of torch's. Float32
  graphs are the same arithmetic in another order: 1e-3 leaves room for fused kernels
  (LayerNorm, GELU, attention) and nothing for a wrong graph. int8 has no such bound
  (its error is the quantization step): its bound is the cosine and the argmax.
- ``argmax``: for the logits of classifiers (sequence, token, image, audio, segmentation,
  CTC, masked LM, QA spans, CLIP), the class torch picks is picked, except where torch's
  own top two are within ``atol`` of each other (a tie no engine can be held to).
- ``agreement``: for generation, the share of greedy tokens that agree with torch's over
  ``GATE_NEW_TOKENS``, counted up to each sequence's first disagreement (after which the
  continuations are conditioned on different prefixes and no longer comparable).

Float32 exports are held to every bound; int8 ones to the cosine, argmax and agreement
bounds of ``INT8``: a quantized export that drifts past them is discarded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """The bounds an export variant must meet (see the module docstring)."""

    min_cosine: float
    atol: Optional[float]
    rtol: float
    min_agreement: float


FP32 = Tolerance(min_cosine=0.9999, atol=1e-3, rtol=1e-3, min_agreement=0.9)
INT8 = Tolerance(min_cosine=0.99, atol=None, rtol=0.0, min_agreement=0.9)
TOLERANCES = {"fp32": FP32, "int8": INT8}

#: How many tokens the generation gate continues each sample for.
GATE_NEW_TOKENS = 16
#: The near-tie margin of the argmax check when a variant has no ``atol`` (int8).
TIE_MARGIN = 1e-3


def cosine_rows(reference: np.ndarray, candidate: np.ndarray) -> float:
    """The smallest cosine similarity between matching batch rows of two tensors."""
    ref = np.asarray(reference, dtype=np.float64).reshape(reference.shape[0] if reference.ndim else 1, -1)
    cand = np.asarray(candidate, dtype=np.float64).reshape(ref.shape)
    dot = (ref * cand).sum(axis=1)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    # two all-zero rows are the same row
    cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), np.where((ref == cand).all(axis=1), 1.0, 0.0))
    return float(cos.min()) if cos.size else 1.0


def argmax_disagreements(reference: np.ndarray, candidate: np.ndarray, axis: int, margin: float) -> int:
    """How many positions pick another class than torch where torch's pick is not a near-tie."""
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.ndim == 0 or ref.shape[axis] < 2:
        return 0
    ref_pick = ref.argmax(axis=axis)
    cand_pick = cand.argmax(axis=axis)
    # torch's score of the candidate's pick: a disagreement counts when torch preferred its own by more than margin
    ref_top = np.take_along_axis(ref, np.expand_dims(ref_pick, axis), axis=axis).squeeze(axis)
    ref_of_cand = np.take_along_axis(ref, np.expand_dims(cand_pick, axis), axis=axis).squeeze(axis)
    return int(((ref_pick != cand_pick) & (ref_top - ref_of_cand > margin)).sum())


def compare_outputs(reference: dict, candidate: dict, variant: str, logits_axis: dict,
                    mask: Optional[np.ndarray] = None) -> dict:
    """Checks an export's output tensors against torch's.

    Args:
        reference: output name -> torch's values (numpy).
        candidate: output name -> the export's values.
        variant: ``fp32`` or ``int8``.
        logits_axis: output name -> the class axis of the outputs checked by argmax.
        mask: the sample's attention mask ``[batch, tokens]``: the values of padding positions
            of outputs laid out ``[batch, tokens, ...]`` mean nothing and are not compared.

    Returns:
        ``{"passed", "min_cosine", "max_abs", "argmax_disagreements", "reason"}``.
    """
    tol = TOLERANCES[variant]
    figures = {"min_cosine": 1.0, "max_abs": 0.0, "argmax_disagreements": 0}
    reasons = []
    for name, ref in reference.items():
        if name not in candidate:
            reasons.append(f"the export has no output {name}")
            continue
        ref, cand = np.asarray(ref), np.asarray(candidate[name])
        if ref.shape != cand.shape:
            reasons.append(f"{name} has shape {cand.shape}, torch's is {ref.shape}")
            continue
        if mask is not None and ref.shape[:2] == mask.shape:
            keep = mask.reshape(mask.shape + (1,) * (ref.ndim - 2)).astype(bool)
            ref, cand = np.where(keep, ref, 0), np.where(keep, cand, 0)
        if not np.isfinite(cand).all():
            reasons.append(f"{name} has values that are not finite")
            continue
        cos = cosine_rows(ref, cand)
        diff = float(np.abs(ref.astype(np.float64) - cand).max()) if ref.size else 0.0
        figures["min_cosine"] = min(figures["min_cosine"], cos)
        figures["max_abs"] = max(figures["max_abs"], diff)
        if cos < tol.min_cosine:
            reasons.append(f"{name}: cosine {cos:.6f} below {tol.min_cosine}")
        if tol.atol is not None and ref.size:
            excess = np.abs(ref - cand) - (tol.atol + tol.rtol * np.abs(ref))
            if (excess > 0).any():
                reasons.append(f"{name}: max difference {diff:.2e} past {tol.atol} + {tol.rtol} x |value|")
        if name in logits_axis:
            wrong = argmax_disagreements(ref, cand, logits_axis[name], tol.atol or TIE_MARGIN)
            figures["argmax_disagreements"] += wrong
            if wrong:
                reasons.append(f"{name}: {wrong} argmax picks differ from torch's")
    return {**figures, "passed": not reasons, "reason": "; ".join(reasons)}


def greedy_agreement(reference: Sequence[Sequence[int]], candidate: Sequence[Sequence[int]]) -> float:
    """The share of greedy tokens that agree, each sequence counted to its first disagreement."""
    agreed = total = 0
    for ref, cand in zip(reference, candidate):
        ref, cand = list(ref), list(cand)
        if not ref:  # torch stopped at once: agreeing is stopping too
            agreed, total = agreed + (not cand), total + 1
            continue
        total += len(ref)
        for a, b in zip(ref, cand):
            if a != b:
                break
            agreed += 1
    return agreed / total if total else 1.0


def compare_generations(reference: Sequence[Sequence[int]], candidate: Sequence[Sequence[int]],
                        variant: str) -> dict:
    """Checks an export's greedy continuations against torch's."""
    share = greedy_agreement(reference, candidate)
    floor = TOLERANCES[variant].min_agreement
    passed = share >= floor
    return {"agreement": share, "passed": passed,
            "reason": "" if passed else f"greedy agreement {share:.3f} below {floor}"}
