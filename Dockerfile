# The vibewatch image: `vibewatch serve` by default; the simulator and replay use the same
# image with another command (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# .dockerignore keeps the virtualenv, caches, Kafka jars and local data out of the context.
COPY . /app
RUN pip install /app \
    && useradd --system --create-home --uid 10001 --user-group vibewatch

# The artifact is read from the source tree copied above: a non-editable install does not
# carry models/artifacts/ into site-packages.
ENV VIBEWATCH_API__HOST=0.0.0.0 \
    VIBEWATCH_API__PORT=8000 \
    VIBEWATCH_MODEL__ARTIFACT_DIR=/app/models/artifacts/default

USER vibewatch
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]

CMD ["vibewatch", "serve"]
