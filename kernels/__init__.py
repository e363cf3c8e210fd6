"""Loss kernels, installed as ``timeclr.kernels``.

- ``nt_xent_triton``: the fused Triton NT-Xent kernel (forward + backward), for CUDA tensors.
- ``nt_xent_chunked``: the same op in chunked PyTorch, for CPU tensors and ``backend='torch'``.
"""
