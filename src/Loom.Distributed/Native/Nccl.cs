using System.Runtime.InteropServices;

namespace Loom.Distributed.Native;

/// <summary>NCCL's C API (libnccl.so.2) and the one CUDA runtime call it needs (select the device).</summary>
internal static unsafe partial class Nccl
{
    public const string Library = "libnccl.so.2";

    public const int Success = 0;

    // ncclDataType_t
    public const int Int8 = 0;
    public const int UInt8 = 1;
    public const int Int32 = 2;
    public const int Int64 = 4;
    public const int Float16 = 6;
    public const int Float32 = 7;
    public const int Float64 = 8;
    public const int BFloat16 = 9;

    // ncclRedOp_t
    public const int OpSum = 0;
    public const int OpMax = 2;
    public const int OpMin = 3;

    /// <summary>ncclUniqueId: 128 opaque bytes (NCCL_UNIQUE_ID_BYTES), passed by value to ncclCommInitRank.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct UniqueId
    {
        public fixed byte Internal[128];
    }

    public static bool IsAvailable()
    {
        if (!NativeLibrary.TryLoad(Library, out var handle)) return false;
        NativeLibrary.Free(handle);
        return true;
    }

    [LibraryImport(Library, EntryPoint = "ncclGetUniqueId")]
    public static partial int GetUniqueId(out UniqueId id);

    [LibraryImport(Library, EntryPoint = "ncclCommInitRank")]
    public static partial int CommInitRank(out IntPtr comm, int nranks, UniqueId id, int rank);

    [LibraryImport(Library, EntryPoint = "ncclCommDestroy")]
    public static partial int CommDestroy(IntPtr comm);

    [LibraryImport(Library, EntryPoint = "ncclCommAbort")]
    public static partial int CommAbort(IntPtr comm);

    [LibraryImport(Library, EntryPoint = "ncclAllReduce")]
    public static partial int AllReduce(IntPtr sendbuff, IntPtr recvbuff, nuint count, int datatype, int op, IntPtr comm, IntPtr stream);

    [LibraryImport(Library, EntryPoint = "ncclReduceScatter")]
    public static partial int ReduceScatter(IntPtr sendbuff, IntPtr recvbuff, nuint recvcount, int datatype, int op, IntPtr comm, IntPtr stream);

    [LibraryImport(Library, EntryPoint = "ncclAllGather")]
    public static partial int AllGather(IntPtr sendbuff, IntPtr recvbuff, nuint sendcount, int datatype, IntPtr comm, IntPtr stream);

    [LibraryImport(Library, EntryPoint = "ncclBroadcast")]
    public static partial int Broadcast(IntPtr sendbuff, IntPtr recvbuff, nuint count, int datatype, int root, IntPtr comm, IntPtr stream);

    [LibraryImport(Library, EntryPoint = "ncclGetErrorString")]
    private static partial IntPtr GetErrorString(int result);

    /// <summary>Throws with NCCL's description when <paramref name="result"/> is not ncclSuccess.</summary>
    public static void Check(int result, string call)
    {
        if (result == Success) return;
        string description = Marshal.PtrToStringUTF8(GetErrorString(result)) ?? $"error {result}";
        throw new InvalidOperationException($"{call} failed: {description}");
    }

    /// <summary>
    /// Makes CUDA device <paramref name="index"/> current (cudaSetDevice), which ncclCommInitRank binds to.
    /// libtorch keeps the CUDA runtime private, so it is looked up by its usual names; without it only device
    /// 0 (CUDA's default) can be used.
    /// </summary>
    public static void SelectDevice(int index)
    {
        foreach (var name in new[] { "libcudart.so.12", "libcudart.so.13", "libcudart.so.11.0", "libcudart.so" })
        {
            if (!NativeLibrary.TryLoad(name, out var handle)) continue;
            var setDevice = (delegate* unmanaged<int, int>)NativeLibrary.GetExport(handle, "cudaSetDevice");
            int error = setDevice(index);
            if (error != 0) throw new InvalidOperationException($"cudaSetDevice({index}) failed with CUDA error {error}");
            return;
        }
        if (index != 0)
            throw new CommunicatorUnavailableException($"cannot select cuda:{index} for NCCL without the CUDA runtime (libcudart): give each rank one GPU with CUDA_VISIBLE_DEVICES and use cuda:0");
    }
}
