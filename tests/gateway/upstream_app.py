"""A tiny replica for gateway tests: answers like a v2 model server and tells who it is.

Run as a script: `python upstream_app.py --name NAME (--fd FD | --uds PATH)`.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

NAME = "replica"
received: Counter[str] = Counter()


async def infer(request: Request) -> Response:
    received["infer"] += 1
    await request.body()
    model = request.path_params["model"]
    return JSONResponse(
        {
            "model_name": model,
            "id": NAME,
            "outputs": [{"name": "predict", "shape": [1], "datatype": "INT64", "data": [0]}],
        }
    )


async def predict_v1(request: Request) -> Response:
    received["predict"] += 1
    return JSONResponse({"predictions": [0], "replica": NAME})


async def ready(request: Request) -> Response:
    return JSONResponse({"ready": True})


async def echo(request: Request) -> Response:
    received["echo"] += 1
    body = await request.body()
    return JSONResponse(
        {
            "replica": NAME,
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": dict(request.headers.items()),
            "body": body.decode(),
        }
    )


async def slow(request: Request) -> Response:
    received["slow"] += 1
    await asyncio.sleep(float(request.query_params.get("seconds", "0.5")))
    return JSONResponse({"replica": NAME, "slow": True})


async def stream(request: Request) -> Response:
    parts = int(request.query_params.get("parts", "3"))

    async def pieces() -> AsyncIterator[bytes]:
        for index in range(parts):
            yield f"part {index};".encode()
            await asyncio.sleep(0.01)

    return StreamingResponse(pieces(), media_type="text/plain")


async def stats(request: Request) -> Response:
    if request.method == "DELETE":
        received.clear()
    return JSONResponse({"replica": NAME, "received": dict(received)})


async def status(request: Request) -> Response:
    return Response(b"teapot", status_code=int(request.path_params["code"]))


app = Starlette(
    routes=[
        Route("/v2/models/{model}/infer", infer, methods=["POST"]),
        Route("/v2/models/{model}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/v1/models/{model}:predict", predict_v1, methods=["POST"]),
        Route("/v2/health/ready", ready),
        Route("/echo/{rest:path}", echo, methods=["GET", "POST", "PUT", "HEAD"]),
        Route("/slow", slow, methods=["GET", "POST"]),
        Route("/stream", stream),
        Route("/stats", stats, methods=["GET", "DELETE"]),
        Route("/status/{code:int}", status),
    ]
)


def main() -> None:
    global NAME
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--fd", type=int)
    parser.add_argument("--uds")
    args = parser.parse_args()
    NAME = args.name
    if args.uds:
        uvicorn.run(app, uds=args.uds, log_level="warning", access_log=False)
        return
    # not uvicorn's fd=: it takes the socket for AF_UNIX and so never sets TCP_NODELAY
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[socket.socket(fileno=args.fd)])


if __name__ == "__main__":
    main()
