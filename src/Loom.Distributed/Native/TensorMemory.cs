using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Loom.Distributed.Native;

/// <summary>The address of a tensor's first element, which collectives read and write in place.</summary>
internal static partial class TensorMemory
{
    /// <summary>
    /// <c>tensor.data_ptr()</c> (storage base plus the tensor's offset) for a contiguous tensor. TorchSharp
    /// 0.107 keeps its own accessors for this internal, so we call the same export of LibTorchSharp that it does.
    /// </summary>
    public static IntPtr DataPointer(Tensor tensor)
    {
        if (!tensor.is_contiguous()) throw new ArgumentException("a collective needs a contiguous tensor: call .contiguous() first");
        if (tensor.numel() == 0) return IntPtr.Zero;
        var pointer = THSTensor_data(tensor.Handle);
        if (pointer == IntPtr.Zero) throw new InvalidOperationException($"libtorch gave no data pointer for a {tensor.dtype} tensor on {tensor.device}");
        return pointer;
    }

    [LibraryImport("LibTorchSharp")]
    private static partial IntPtr THSTensor_data(IntPtr tensor);
}
