# The harness image: `harness worker` by default; docker-compose.yml also runs `harness
# codec-server` (and, with --profile sim, `harness sim`) from it.
#
#   docker build -t harness .
#   docker run --rm -e TEMPORAL_ADDRESS=host:7233 -e OPENAI_API_KEY harness
FROM python:3.11.13-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package is built from (pyproject.toml names README.md as its readme).
COPY pyproject.toml README.md worker.py ./
COPY harness ./harness
COPY contracts ./contracts
COPY workflows ./workflows
COPY activities ./activities
COPY policies ./policies

# The s3 extra: large payloads in S3 or MinIO (HARNESS_S3_BUCKET). Then bytecode for the installed
# workflow modules: Temporal's sandbox imports them afresh for every workflow run, and the
# non-root user below cannot write __pycache__ into site-packages, so without .pyc files each run
# would compile them from source again (Makefile target `bytecode`). Run from / so that `import
# workflows` finds the installed package, not this source tree.
RUN pip install '.[s3]' \
    && cd / \
    && python -m compileall -q "$(python -c 'import pathlib, workflows; print(pathlib.Path(workflows.__file__).parent)')" \
    && rm -rf /src

# No root at run time. The working directory is the user's own: anything harness keeps relative to
# it (.harness/, blobs when HARNESS_S3_BUCKET is unset) lands there.
RUN useradd --create-home --uid 10001 --user-group harness
USER harness
WORKDIR /home/harness

# The codec server's default port (`harness codec-server --host 0.0.0.0`).
EXPOSE 8888

# SIGTERM drains the worker: it stops polling and lets running calls finish within
# HARNESS_DRAIN_TIMEOUT_S (default 30 s); give the container longer than that to stop.
STOPSIGNAL SIGTERM
CMD ["harness", "worker"]
