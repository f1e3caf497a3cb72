"""Weight-only quantized builds (``build --quant int4|int8``): the recipe, the per-target graph rewrite, and the
dequantized weights ``validate`` puts into the PyTorch reference."""
