# The one image for Kubernetes: the model server every replica runs (`ebbtide serve-model`),
# the operator (`ebbtide kube operator`) and the model download init container
# (`ebbtide kube fetch-model`). Build: docker build -t ebbtide:0.1.0 .
# More model formats: docker build --build-arg EXTRAS=kube,onnx,xgboost -t ebbtide:0.1.0 .
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
ARG EXTRAS=kube
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[${EXTRAS}]"

FROM python:${PYTHON_VERSION}-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EBBTIDE_HOME=/tmp/ebbtide
COPY --from=build /wheels /wheels
# Bytecode is compiled here, once: the image's user cannot write __pycache__ and
# PYTHONDONTWRITEBYTECODE is set, so without it every pod would compile numpy, scikit-learn
# and the rest from source at each start (seconds of a cold start).
RUN pip install --no-cache-dir --no-index --compile /wheels/*.whl \
    && python -m compileall -q -j 0 "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && rm -rf /wheels \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin ebbtide
# A numeric user, so the pods' runAsNonRoot check can verify it without a passwd lookup.
USER 10001
WORKDIR /tmp
# The model server's port; the operator's liveness endpoint is 8081.
EXPOSE 8080
CMD ["ebbtide", "--help"]
