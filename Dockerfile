# The pipeline's image: the `mic-pipeline` command and its dependencies, nothing else.
# docker-compose.yml runs every pipeline service from it (the Kafka broker and PostgreSQL come
# from their official images). Build: docker build -t mic-pipeline:local .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY mic_pipeline ./mic_pipeline
COPY schemas ./schemas
COPY producers ./producers
COPY streams ./streams
COPY sinks ./sinks
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /data --create-home mic

USER mic
ENV MIC_WAREHOUSE_DIR=/data/warehouse \
    MIC_STATE_DIR=/data/state
VOLUME ["/data"]
# stream worker (faust web: /aggregates, /health, /metrics), operators' web page, sinks' /metrics
EXPOSE 6066 8080 9101 9102
ENTRYPOINT ["mic-pipeline"]
CMD ["--help"]
