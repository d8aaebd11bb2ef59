"""The benchmark's naive baseline: the out-of-the-box local setup.

FastAPI + sentence-transformers under uvicorn, one ``model.encode`` per request,
every default left alone. ``BENCH_MODEL_PATH`` names the model folder.

    uvicorn bench.naive_server:app --port 8001
"""

import os

from fastapi import FastAPI
from sentence_transformers import SentenceTransformer

model = SentenceTransformer(os.environ["BENCH_MODEL_PATH"], device="cpu")
app = FastAPI()


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


@app.post("/embed")
def embed(body: dict) -> list:
    return model.encode(body["inputs"]).tolist()
