"""The frameworks convcpu is measured against (optional: each returns None when
its package is missing).  Used only by bench/, never by the library."""
import numpy as np


def torch_conv(x, w, stride, padding, dilation, groups, threads, nspatial=2):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    fn = torch.nn.functional.conv2d if nspatial == 2 else torch.nn.functional.conv1d

    def run():
        with torch.inference_mode():
            return fn(xt, wt, None, stride, padding, dilation, groups)
    return run


def ort_conv(x, w, stride, padding, dilation, groups, threads, nspatial=2):
    """An ONNX Runtime session of one Conv node, weights as an initializer,
    default graph optimisation, `threads` intra-op threads."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    elem = TensorProto.FLOAT if x.dtype == np.float32 else TensorProto.DOUBLE
    pads = [padding] * nspatial * 2 if isinstance(padding, int) else list(padding) * 2
    node = helper.make_node(
        "Conv", ["x", "w"], ["y"], strides=[stride] * nspatial, pads=pads,
        dilations=[dilation] * nspatial, group=groups, kernel_shape=list(w.shape[2:]))
    graph = helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("x", elem, list(x.shape))],
        [helper.make_tensor_value_info("y", elem, None)],
        initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feed = {"x": x}

    def run():
        return session.run(None, feed)[0]
    return run


def sgemm_same_shape(m, n, k, dtype):
    """SciPy's BLAS GEMM C[m, n] = A[m, k] @ B[k, n] (the library convcpu calls),
    on Fortran-ordered operands so nothing is copied; it runs on the BLAS
    threads the caller set (bench sets them to the bench's thread count)."""
    from scipy.linalg import blas
    gemm = blas.sgemm if dtype == np.float32 else blas.dgemm
    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.standard_normal((m, k)).astype(dtype))
    b = np.asfortranarray(rng.standard_normal((k, n)).astype(dtype))
    c = np.asfortranarray(np.empty((m, n), dtype))

    def run():
        return gemm(1.0, a, b, c=c, overwrite_c=True)
    return run
