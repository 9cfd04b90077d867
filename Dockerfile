# vibewatch images, two targets of one file:
#
#   docker build -t vibewatch .                        serving image (the default, last stage):
#                                                      serve, simulate, replay, evaluate
#   docker build --target train -t vibewatch-train .   the same plus TensorFlow, Keras and
#                                                      matplotlib, for `vibewatch train`
#
# The serving image has no TensorFlow: the service runs the trained weights with its NumPy
# kernel. README.md gives the sizes (a serving-only virtualenv is ~145 MB against ~2.4 GB).

# The project as a wheel, built once for both targets.
FROM python:3.11-slim AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY . /src
RUN pip wheel --no-deps --wheel-dir /wheels /src

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN useradd --system --create-home --uid 10001 --user-group vibewatch
# The model artifacts are data, not package code: the wheel does not carry them.
COPY models/artifacts /app/models/artifacts
COPY --from=wheel /wheels /wheels
ENV VIBEWATCH_MODEL__ARTIFACT_DIR=/app/models/artifacts/default

FROM base AS train
RUN pip install "$(ls /wheels/vibewatch-*.whl)[train]" && rm -rf /wheels
USER vibewatch
CMD ["vibewatch", "train", "--help"]

FROM base AS serve
RUN pip install /wheels/vibewatch-*.whl && rm -rf /wheels
ENV VIBEWATCH_API__HOST=0.0.0.0 \
    VIBEWATCH_API__PORT=8000
USER vibewatch
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
CMD ["vibewatch", "serve"]
