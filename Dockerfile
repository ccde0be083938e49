# Relay's worker image: the flows' code and everything they run, configured only through
# environment variables and blocks. The same image serves a `docker`, `kubernetes` or `ecs`
# work pool (prefect.yaml); the README's "Several machines" section says what to set.
#
#   docker build -t <registry>/relay-worker:<version> .
#
# The local stack builds it on its own stand-in base (no image registry is reachable there):
#   python -m devstack worker-image      (BASE_IMAGE=relay/worker-base:3.11, which has git)
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# git checks out the commits; Debian's base images lack it.
RUN command -v git >/dev/null \
    || (apt-get update && apt-get install -y --no-install-recommends git ca-certificates \
        && rm -rf /var/lib/apt/lists/*)

# checkov (the compliance gate) pins versions that conflict with Prefect's, so it gets a
# virtualenv of its own, as `make venv` does; relay/compliance.py finds it by RELAY_CHECKOV.
RUN python3 -m venv --without-pip /opt/checkov \
    && pip --python /opt/checkov/bin/python install --no-cache-dir 'checkov>=3.2,<4'
ENV RELAY_CHECKOV=/opt/checkov/bin/checkov

# Relay's dependencies first, from pyproject.toml alone: a change to the code does not
# install them again.
WORKDIR /opt/relay
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt && rm /tmp/requirements.txt

COPY . ./
RUN pip install --no-cache-dir --no-deps . && python3 -c "import flows.release, relay.ledger"

# The deployments' pull step (prefect.yaml) starts flows here, from RELAY_PROJECT_DIR.
ENV RELAY_PROJECT_DIR=/opt/relay \
    RELAY_HOME=/var/lib/relay \
    PYTHONUNBUFFERED=1
RUN mkdir -p /var/lib/relay
CMD ["prefect", "worker", "start", "--pool", "relay"]
