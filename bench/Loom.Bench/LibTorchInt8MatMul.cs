using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>
/// libtorch's CPU int8-weight matmul, <c>aten::_weight_int8pack_mm(A, B, scales)</c> = A Bᵀ · scales with A (M, K)
/// float, B (N, K) int8 and scales (N): it widens int8 blocks of B to float in registers (AVX2/AVX-512 builds of
/// libtorch), so it reads 1 byte per weight instead of 4. TorchSharp binds no int8 matmul, but libtorch_cpu exports
/// the op through its C shim for AOT Inductor (<c>aoti_torch_cpu__weight_int8pack_mm</c>), whose tensor handles are
/// <c>at::Tensor*</c> just as TorchSharp's are; so the op is called directly and its result is handed to TorchSharp.
/// </summary>
/// <remarks>
/// The <c>int8-linear</c> benchmark's peer: Loom tried it first for <c>Int8Weights.Linear</c>, but with float32
/// activations libtorch 2.10 runs it far slower than the float matmul (and crashed on bfloat16 activations), so
/// Loom has its own kernel (Loom.Models.Quantization.Int8MatMulKernel) and this stays here, measured beside it.
/// </remarks>
internal static unsafe class LibTorchInt8MatMul
{
    private const string Export = "aoti_torch_cpu__weight_int8pack_mm";

    // AOTITorchError aoti_torch_cpu__weight_int8pack_mm(AtenTensorHandle self, AtenTensorHandle mat2,
    //     AtenTensorHandle scales, AtenTensorHandle* ret0); the error is 0 on success.
    private static readonly Lazy<IntPtr> Function = new(Resolve, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Whether this process's libtorch exports the op.</summary>
    public static bool IsAvailable => Function.Value != IntPtr.Zero;

    /// <summary>
    /// A Bᵀ · scales, (M, N), for contiguous CPU tensors: <paramref name="a"/> (M, K) float32,
    /// <paramref name="b"/> (N, K) int8 and <paramref name="scales"/> (N) float32.
    /// The caller checks those; a libtorch error (already reported on stderr by libtorch) becomes an exception.
    /// </summary>
    public static Tensor Multiply(Tensor a, Tensor b, Tensor scales)
    {
        var function = (delegate* unmanaged<IntPtr, IntPtr, IntPtr, IntPtr*, int>)Function.Value;
        if (function == null) throw new InvalidOperationException($"this libtorch does not export {Export}; check IsAvailable first");
        IntPtr result = IntPtr.Zero;
        int error = function(a.Handle, b.Handle, scales.Handle, &result);
        GC.KeepAlive(a);
        GC.KeepAlive(b);
        GC.KeepAlive(scales);
        if (error != 0 || result == IntPtr.Zero)
            throw new InvalidOperationException($"libtorch's _weight_int8pack_mm failed (error {error}) on A [{string.Join(", ", a.shape)}] {a.dtype}, B [{string.Join(", ", b.shape)}] {b.dtype}, scales [{string.Join(", ", scales.shape)}] {scales.dtype}");
        return Tensor.UnsafeCreateTensor(result); // takes ownership of the new at::Tensor, in the current dispose scope
    }

    private static IntPtr Resolve()
    {
        using (empty(0)) { } // makes TorchSharp load libtorch, so that the names below find the loaded copy
        foreach (string name in new[] { "libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll", "torch_cpu" })
        {
            if (NativeLibrary.TryLoad(name, typeof(torch).Assembly, DllImportSearchPath.SafeDirectories | DllImportSearchPath.AssemblyDirectory, out IntPtr library)
                && NativeLibrary.TryGetExport(library, Export, out IntPtr address))
            {
                return address;
            }
        }
        return IntPtr.Zero;
    }
}
