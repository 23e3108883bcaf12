using System.Runtime.InteropServices;

namespace Loom.Distributed.Native;

/// <summary>
/// MPICH's C API (libmpich.so.12, Debian's <c>mpich</c> package). MPICH's ABI makes every handle an
/// <c>int</c>; the constants are those of /usr/include/x86_64-linux-gnu/mpich/mpi.h (MPICH 4).
/// Open MPI's ABI (pointer handles) is different, which is why only MPICH is bound.
/// </summary>
internal static unsafe partial class Mpi
{
    public const string Library = "libmpich.so.12";

    public const int Success = 0;
    public const int ThreadSerialized = 2;
    public const int CommWorld = 0x44000000;

    public const int Byte = 0x4c00010d;
    public const int Int8 = 0x4c000137;
    public const int UInt8 = 0x4c00013b;
    public const int Int32 = 0x4c000439;
    public const int Int64 = 0x4c00083a;
    public const int Float = 0x4c00040a;
    public const int Double = 0x4c00080b;

    public const int OpMax = 0x58000001;
    public const int OpMin = 0x58000002;
    public const int OpSum = 0x58000003;

    /// <summary>MPI_IN_PLACE: <c>(void*)-1</c>.</summary>
    public static readonly IntPtr InPlace = new(-1);

    private const int MaxErrorString = 512;

    /// <summary>True when the library can be loaded (the process stays free of MPI otherwise).</summary>
    public static bool IsAvailable()
    {
        if (!NativeLibrary.TryLoad(Library, out var handle)) return false;
        NativeLibrary.Free(handle); // the import below loads it again (and keeps it)
        return true;
    }

    [LibraryImport(Library, EntryPoint = "MPI_Init_thread")]
    public static partial int InitThread(IntPtr argc, IntPtr argv, int required, out int provided);

    [LibraryImport(Library, EntryPoint = "MPI_Initialized")]
    public static partial int Initialized(out int flag);

    [LibraryImport(Library, EntryPoint = "MPI_Finalized")]
    public static partial int Finalized(out int flag);

    [LibraryImport(Library, EntryPoint = "MPI_Finalize")]
    public static partial int Finalize();

    [LibraryImport(Library, EntryPoint = "MPI_Comm_rank")]
    public static partial int CommRank(int comm, out int rank);

    [LibraryImport(Library, EntryPoint = "MPI_Comm_size")]
    public static partial int CommSize(int comm, out int size);

    [LibraryImport(Library, EntryPoint = "MPI_Comm_split")]
    public static partial int CommSplit(int comm, int color, int key, out int newcomm);

    [LibraryImport(Library, EntryPoint = "MPI_Comm_free")]
    public static partial int CommFree(ref int comm);

    [LibraryImport(Library, EntryPoint = "MPI_Allreduce")]
    public static partial int Allreduce(IntPtr sendbuf, IntPtr recvbuf, int count, int datatype, int op, int comm);

    [LibraryImport(Library, EntryPoint = "MPI_Reduce_scatter_block")]
    public static partial int ReduceScatterBlock(IntPtr sendbuf, IntPtr recvbuf, int recvcount, int datatype, int op, int comm);

    [LibraryImport(Library, EntryPoint = "MPI_Allgather")]
    public static partial int Allgather(IntPtr sendbuf, int sendcount, int sendtype, IntPtr recvbuf, int recvcount, int recvtype, int comm);

    [LibraryImport(Library, EntryPoint = "MPI_Bcast")]
    public static partial int Bcast(IntPtr buffer, int count, int datatype, int root, int comm);

    [LibraryImport(Library, EntryPoint = "MPI_Barrier")]
    public static partial int Barrier(int comm);

    [LibraryImport(Library, EntryPoint = "MPI_Abort")]
    public static partial int Abort(int comm, int errorcode);

    [LibraryImport(Library, EntryPoint = "MPI_Error_string")]
    private static partial int ErrorString(int errorcode, byte* text, out int length);

    /// <summary>Throws with MPI's own description when <paramref name="code"/> is not MPI_SUCCESS.</summary>
    public static void Check(int code, string call)
    {
        if (code == Success) return;
        var text = stackalloc byte[MaxErrorString];
        string description = ErrorString(code, text, out int length) == Success
            ? System.Text.Encoding.ASCII.GetString(text, Math.Clamp(length, 0, MaxErrorString)).Split('\n')[0]
            : $"error code {code}";
        throw new InvalidOperationException($"{call} failed: {description}");
    }
}
