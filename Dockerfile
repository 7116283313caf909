# The Arrears worker (and starter) image used by docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ARREARS_DATA_DIR=/data \
    ARREARS_FONTS_DIR=/app/fonts

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
COPY strategies/ strategies/
COPY templates/ templates/
COPY compliance/ compliance/
COPY worker.py starter.py agent.py ./
# tzdata: zoneinfo needs a time-zone database and the slim image ships none.
RUN pip install --no-cache-dir . tzdata
# Letters are set in Noto Sans SC: cut its static weights now, not at the first letter.
RUN python -c "import os, pathlib; from activities.letters import prepare_fonts; prepare_fonts(pathlib.Path(os.environ['ARREARS_FONTS_DIR']))"

USER arrears

CMD ["python", "worker.py"]
