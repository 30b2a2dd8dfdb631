# Belka in a container: the same pinned environment and Makefile steps as `make run`.
#   docker build -t belka .        (downloads the ImageNet weights at build time)
#   docker run -p 8000:8000 belka  -> http://localhost:8000/
FROM python:3.11-slim-bookworm

# Node + npm run TF.js for `belka convert`/`belka verify`; make runs the README's steps.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make nodejs npm \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 belka
WORKDIR /app
RUN chown belka:belka /app
USER belka

# Dependencies first (cached layer): the pinned Python set and TF.js from npm.
COPY --chown=belka:belka pyproject.toml constraints.txt package.json package-lock.json Makefile README.md ./
COPY --chown=belka:belka app/__init__.py app/__init__.py
RUN make setup PIP_EXTRAS=

COPY --chown=belka:belka . .
# Re-install the package itself now that all of app/ is here (dependencies are already in place).
RUN .venv/bin/python -m pip install -q --no-deps -e . \
    # Convert the default model at build time: ImageNet weights when the build has internet,
    # otherwise untrained weights, said loudly (same rule as `make run`).
    && make models PIP_EXTRAS=

ENV BELKA_HOST=0.0.0.0 BELKA_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD .venv/bin/python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD [".venv/bin/belka", "serve"]
