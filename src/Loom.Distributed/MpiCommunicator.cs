using Loom.Distributed.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Distributed;

/// <summary>
/// Collectives over CPU tensors with MPICH (Debian's <c>mpich</c>: libmpich.so.12), for processes started by
/// MPICH's <c>mpirun</c> (hydra) or by <c>srun</c>. Reads and writes the tensors' memory in place.
/// </summary>
/// <remarks>
/// <para>
/// float32, float64, int64, int32, uint8 and int8 tensors go to MPI as they are; bfloat16 and float16 are
/// reduced through a float32 copy (MPI has no such types), and a non-contiguous tensor through a
/// contiguous copy, each written back. CUDA tensors are refused: use <see cref="NcclCommunicator"/>.
/// </para>
/// <para>
/// MPI can be initialised once per process: the communicator that initialised it finalises it on
/// <see cref="Dispose"/>, after which no other can be made. Errors keep MPI's default handler, which
/// aborts the whole job, so a failing rank cannot leave the others waiting.
/// </para>
/// </remarks>
public sealed class MpiCommunicator : ICommunicator
{
    private readonly Lock gate; // MPI_THREAD_SERIALIZED: one call at a time, shared with the groups split from this one
    private readonly bool ownsMpi;
    private readonly int comm;  // MPI_COMM_WORLD, or a group made by Split
    private readonly MpiCommunicator? world; // the communicator this group was split from (null for the world itself)
    private bool disposed;

    /// <summary>Initialises MPI (unless the process already did) and joins MPI_COMM_WORLD.</summary>
    /// <exception cref="CommunicatorUnavailableException">libmpich.so.12 is missing, or MPI was already finalised here.</exception>
    public MpiCommunicator()
    {
        if (!Mpi.IsAvailable())
            throw new CommunicatorUnavailableException($"{Mpi.Library} not found: install mpich (apt-get install mpich)");
        Mpi.Check(Mpi.Finalized(out int finalized), "MPI_Finalized");
        if (finalized != 0)
            throw new CommunicatorUnavailableException("MPI was already finalized in this process: make one MpiCommunicator per process and dispose it only at exit");
        Mpi.Check(Mpi.Initialized(out int initialized), "MPI_Initialized");
        if (initialized == 0)
        {
            Mpi.Check(Mpi.InitThread(IntPtr.Zero, IntPtr.Zero, Mpi.ThreadSerialized, out int provided), "MPI_Init_thread");
            ownsMpi = true;
            if (provided < Mpi.ThreadSerialized)
            {
                Mpi.Finalize();
                throw new CommunicatorUnavailableException($"this MPI library offers thread level {provided}, below MPI_THREAD_SERIALIZED that .NET needs: use Debian's mpich");
            }
        }
        gate = new Lock();
        comm = Mpi.CommWorld;
        Mpi.Check(Mpi.CommRank(comm, out int rank), "MPI_Comm_rank");
        Mpi.Check(Mpi.CommSize(comm, out int size), "MPI_Comm_size");
        Rank = rank;
        WorldSize = size;
    }

    private MpiCommunicator(MpiCommunicator world, int comm)
    {
        this.world = world;
        gate = world.gate;
        this.comm = comm;
        Mpi.Check(Mpi.CommRank(comm, out int rank), "MPI_Comm_rank");
        Mpi.Check(Mpi.CommSize(comm, out int size), "MPI_Comm_size");
        Rank = rank;
        WorldSize = size;
    }

    /// <inheritdoc />
    public int Rank { get; }

    /// <inheritdoc />
    public int WorldSize { get; }

    /// <inheritdoc />
    public string Backend => "mpi";

    /// <inheritdoc />
    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        using var buffer = Buffer.For(tensor, writeBack: true);
        lock (gate)
        {
            ThrowIfDisposed();
            // MPI counts are ints: reduce very large tensors in pieces.
            foreach (var (offset, count) in Pieces(buffer.Count))
                Mpi.Check(Mpi.Allreduce(Mpi.InPlace, buffer.At(offset), count, buffer.Datatype, Op(op), comm), "MPI_Allreduce");
        }
    }

    /// <inheritdoc />
    public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum)
    {
        CollectiveChecks.ReduceScatter(input, output, WorldSize);
        using var send = Buffer.For(input, writeBack: false);
        using var receive = Buffer.For(output, writeBack: true);
        lock (gate)
        {
            ThrowIfDisposed();
            Mpi.Check(Mpi.ReduceScatterBlock(send.At(0), receive.At(0), IntCount(receive.Count, "ReduceScatter"), receive.Datatype, Op(op), comm),
                "MPI_Reduce_scatter_block");
        }
    }

    /// <inheritdoc />
    public void AllGather(Tensor input, Tensor output)
    {
        CollectiveChecks.AllGather(input, output, WorldSize);
        using var send = Buffer.For(input, writeBack: false);
        using var receive = Buffer.For(output, writeBack: true);
        lock (gate)
        {
            ThrowIfDisposed();
            int count = IntCount(send.Count, "AllGather");
            Mpi.Check(Mpi.Allgather(send.At(0), count, send.Datatype, receive.At(0), count, receive.Datatype, comm), "MPI_Allgather");
        }
    }

    /// <inheritdoc />
    public void Broadcast(Tensor tensor, int root)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        CollectiveChecks.Root(root, WorldSize);
        using var buffer = Buffer.For(tensor, writeBack: true);
        lock (gate)
        {
            ThrowIfDisposed();
            foreach (var (offset, count) in Pieces(buffer.Count))
                Mpi.Check(Mpi.Bcast(buffer.At(offset), count, buffer.Datatype, root, comm), "MPI_Bcast");
        }
    }

    /// <summary>Overwrites <paramref name="bytes"/> on every rank with rank <paramref name="root"/>'s (for NCCL's unique id).</summary>
    internal unsafe void Broadcast(byte[] bytes, int root)
    {
        CollectiveChecks.Root(root, WorldSize);
        lock (gate)
        {
            ThrowIfDisposed();
            fixed (byte* data = bytes) Mpi.Check(Mpi.Bcast((IntPtr)data, bytes.Length, Mpi.Byte, root, comm), "MPI_Bcast");
        }
    }

    /// <inheritdoc />
    public void Barrier()
    {
        lock (gate)
        {
            ThrowIfDisposed();
            Mpi.Check(Mpi.Barrier(comm), "MPI_Barrier");
        }
    }

    /// <inheritdoc />
    /// <remarks>The group shares this communicator's lock (MPI is initialised MPI_THREAD_SERIALIZED) and must be disposed before it.</remarks>
    public ICommunicator Split(int color, int key)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(color);
        lock (gate)
        {
            ThrowIfDisposed();
            Mpi.Check(Mpi.CommSplit(comm, color, key, out int group), "MPI_Comm_split");
            return new MpiCommunicator(world ?? this, group);
        }
    }

    /// <inheritdoc />
    public void Abort(int exitCode)
    {
        if (!disposed) Mpi.Abort(Mpi.CommWorld, exitCode); // the whole job, whichever group the error came from
        Environment.Exit(exitCode); // MPI_Abort does not return; this is for a communicator already disposed
    }

    /// <summary>Frees a group made by <see cref="Split"/>; finalises MPI if this communicator initialised it.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (disposed) return;
            disposed = true;
            if (world is not null)
            {
                // A group freed after MPI_Finalize (its world disposed first) needs nothing: finalising freed it.
                Mpi.Check(Mpi.Finalized(out int finalized), "MPI_Finalized");
                int group = comm;
                if (finalized == 0) Mpi.Check(Mpi.CommFree(ref group), "MPI_Comm_free");
            }
            if (ownsMpi) Mpi.Finalize();
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(disposed, this);

    private static int Op(ReduceOp op) => op switch
    {
        ReduceOp.Sum => Mpi.OpSum,
        ReduceOp.Max => Mpi.OpMax,
        ReduceOp.Min => Mpi.OpMin,
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "unknown reduction"),
    };

    private static int IntCount(long count, string what) => count <= int.MaxValue
        ? (int)count
        : throw new ArgumentException($"{what}: {count} elements per rank exceed MPI's int count ({int.MaxValue}); split the tensor");

    private static IEnumerable<(long Offset, int Count)> Pieces(long count)
    {
        for (long offset = 0; offset < count; offset += int.MaxValue)
            yield return (offset, (int)Math.Min(int.MaxValue, count - offset));
    }

    /// <summary>
    /// The memory MPI works on: the tensor itself when MPI can take it as it is, else a contiguous copy of a
    /// type MPI has, which <see cref="Dispose"/> writes back into the tensor when asked to.
    /// </summary>
    private sealed class Buffer : IDisposable
    {
        private readonly Tensor tensor;
        private readonly Tensor? staged;
        private readonly bool writeBack;
        private readonly IntPtr data;
        private readonly int elementSize;

        private Buffer(Tensor tensor, Tensor? staged, bool writeBack)
        {
            this.tensor = tensor;
            this.staged = staged;
            this.writeBack = writeBack;
            var memory = staged ?? tensor;
            Datatype = DatatypeOf(memory.dtype)!.Value;
            Count = memory.numel();
            elementSize = (int)memory.ElementSize;
            data = TensorMemory.DataPointer(memory);
        }

        public int Datatype { get; }

        public long Count { get; }

        public static Buffer For(Tensor tensor, bool writeBack)
        {
            if (tensor.device_type != DeviceType.CPU)
                throw new ArgumentException($"MpiCommunicator works on CPU tensors but this one is on {tensor.device}: use NcclCommunicator for CUDA tensors (Communicators.FromEnvironment picks it for a CUDA device)");
            var direct = DatatypeOf(tensor.dtype);
            if (direct is not null && tensor.is_contiguous()) return new Buffer(tensor, null, writeBack);
            var stageType = direct is not null ? tensor.dtype
                : tensor.dtype is ScalarType.BFloat16 or ScalarType.Float16 ? ScalarType.Float32
                : throw new ArgumentException($"MpiCommunicator cannot reduce {tensor.dtype} tensors: use float32, float64, bfloat16, float16, int64, int32, uint8 or int8");
            using var noGrad = no_grad();
            var staged = empty(tensor.shape, stageType);
            staged.copy_(tensor); // converts the dtype and makes it contiguous in one copy
            return new Buffer(tensor, staged, writeBack);
        }

        public IntPtr At(long offset) => data + (nint)(offset * elementSize);

        public void Dispose()
        {
            if (staged is null)
            {
                GC.KeepAlive(tensor);
                return;
            }
            if (writeBack)
                using (no_grad()) tensor.copy_(staged);
            staged.Dispose();
        }

        private static int? DatatypeOf(ScalarType type) => type switch
        {
            ScalarType.Float32 => Mpi.Float,
            ScalarType.Float64 => Mpi.Double,
            ScalarType.Int64 => Mpi.Int64,
            ScalarType.Int32 => Mpi.Int32,
            ScalarType.Byte => Mpi.UInt8,
            ScalarType.Int8 => Mpi.Int8,
            _ => null,
        };
    }
}
