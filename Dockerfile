# The service's image: web (gunicorn), worker, beat and the Meta sandbox all run it with another
# command. /var/lib/meta_sandbox holds the sandbox's catalog (a volume under compose).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_STATIC_ROOT=/app/staticfiles

# Every dependency ships a wheel for this platform (psycopg[binary], orjson), so no compiler.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin mindo
WORKDIR /app

# Dependencies first, from pyproject alone, so that a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps))" \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
RUN pip install --no-deps . \
    && python manage.py collectstatic --no-input -v0 \
    && chown -R mindo:mindo /app \
    && install -d -o mindo -g mindo /var/lib/meta_sandbox

USER mindo
EXPOSE 8000
# Each process's metrics go to files here for /metrics to add up (mindo.metrics); the entrypoint
# creates the directory and empties it of what an earlier run of the container left.
ENV PROMETHEUS_MULTIPROC_DIR=/tmp/mindo-metrics
ENTRYPOINT ["/app/ops/docker/entrypoint"]
# `-c python:mindo.gunicorn_conf`: gunicorn's own log lines follow LOG_FORMAT like Django's.
CMD ["gunicorn", "mindo.wsgi", "-c", "python:mindo.gunicorn_conf", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
