# One image for both services: `python -m service` (the default) or `python -m auth_service`.
# Configuration comes only from the environment at run time (see docker-compose.yml and
# .env.example); no secret is ever baked into a layer.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so editing the code does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project itself (no dev extras); the source tree is not needed at run time.
COPY README.md ./
COPY common ./common
COPY auth_service ./auth_service
COPY service ./service
RUN pip install --no-deps /src && rm -rf /src

# Inside a container the services must listen on every interface to be reachable at all.
ENV AUTH_HOST=0.0.0.0 \
    CHAT_HOST=0.0.0.0

WORKDIR /app
USER 10001:10001

EXPOSE 8080 8081
CMD ["python", "-m", "service"]
