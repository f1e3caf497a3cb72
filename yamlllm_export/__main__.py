"""`python -m yamlllm_export` runs the CLI (handy from a source tree without an install)."""

from yamlllm_export.cli import main

main()
