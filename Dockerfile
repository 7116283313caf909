# The Arrears image used by docker-compose.yml: the worker, the desk (python -m desk serve), the starter.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ARREARS_DATA_DIR=/data \
    MPLCONFIGDIR=/tmp/matplotlib

RUN groupadd --system --gid 10001 arrears \
    && useradd --system --uid 10001 --gid arrears --home-dir /app --shell /usr/sbin/nologin arrears \
    && mkdir -p /app /data \
    && chown arrears:arrears /data

WORKDIR /app

COPY pyproject.toml README.md ./
COPY domain/ domain/
COPY workflows/ workflows/
COPY activities/ activities/
COPY infra/ infra/
COPY ledger/ ledger/
COPY desk/ desk/
COPY sync/ sync/
COPY reports/ reports/
COPY lab/ lab/
COPY strategies/ strategies/
COPY templates/ templates/
COPY compliance/ compliance/
COPY worker.py starter.py agent.py ./
# tzdata: zoneinfo needs a time-zone database and the slim image ships none.
RUN pip install --no-cache-dir . tzdata
# Letters need nothing prepared: each worker's letter processes instance the glyphs they use from the
# font package as they start. The worker runs them as children (multiprocessing, "spawn").

USER arrears

CMD ["python", "worker.py"]
