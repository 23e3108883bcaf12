using Loom.Distributed.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Distributed;

/// <summary>
/// Collectives over CUDA tensors with NCCL (libnccl.so.2), one GPU per rank. MPI starts the job and carries
/// NCCL's unique id from rank 0 to the others; NCCL moves the data.
/// </summary>
/// <remarks>
/// <para>
/// <b>Checked on GPUs only.</b> The CI machines have no GPU and no NCCL, so the tests cover only the
/// one-line error when libnccl is missing; the rest is exercised on a GPU host.
/// </para>
/// <para>
/// <b>Streams.</b> TorchSharp 0.107 exposes no CUDA stream API, and nothing in Loom changes libtorch's
/// current stream, which is therefore the legacy default stream. Each collective is enqueued on that default
/// stream (stream 0), so it runs after the kernels that produced its input, and is followed by a device
/// synchronize so that the result is complete when the call returns, whatever reads it next (a blocking
/// collective, as <see cref="ICommunicator"/> promises; it costs the overlap PyTorch's DDP gets).
/// </para>
/// <para>
/// Supports float32, float64, bfloat16, float16, int64, int32, uint8 and int8, contiguous and on this
/// communicator's <see cref="Device"/>.
/// </para>
/// </remarks>
public sealed class NcclCommunicator : ICommunicator
{
    private readonly MpiCommunicator mpi;
    private readonly Lock gate = new();
    private IntPtr comm;

    /// <summary>Creates the NCCL communicator of all MPI ranks, this one on <paramref name="device"/>; takes ownership of <paramref name="mpi"/>.</summary>
    /// <param name="mpi">The job's MPI communicator (for the unique id); disposed with this one.</param>
    /// <param name="device">This rank's GPU.</param>
    /// <exception cref="CommunicatorUnavailableException">libnccl.so.2 is missing, or the device cannot be selected.</exception>
    public NcclCommunicator(MpiCommunicator mpi, Device device)
    {
        this.mpi = mpi ?? throw new ArgumentNullException(nameof(mpi));
        ArgumentNullException.ThrowIfNull(device);
        if (device.type != DeviceType.CUDA)
            throw new ArgumentException($"NcclCommunicator needs a CUDA device, got {device}: use MpiCommunicator on the CPU");
        if (!Nccl.IsAvailable())
            throw new CommunicatorUnavailableException($"{Nccl.Library} not found: install NCCL (apt-get install libnccl2 from NVIDIA's CUDA repository) or train on the CPU with --device cpu");
        Device = device;
        Nccl.SelectDevice(Math.Max(0, (int)device.index));

        var id = new byte[128];
        if (mpi.Rank == 0)
        {
            Nccl.Check(Nccl.GetUniqueId(out var fresh), "ncclGetUniqueId");
            unsafe
            {
                for (int i = 0; i < id.Length; i++) id[i] = fresh.Internal[i];
            }
        }
        mpi.Broadcast(id, root: 0);
        var shared = new Nccl.UniqueId();
        unsafe
        {
            for (int i = 0; i < id.Length; i++) shared.Internal[i] = id[i];
        }
        Nccl.Check(Nccl.CommInitRank(out comm, mpi.WorldSize, shared, mpi.Rank), "ncclCommInitRank");
    }

    /// <summary>This rank's GPU.</summary>
    public Device Device { get; }

    /// <inheritdoc />
    public int Rank => mpi.Rank;

    /// <inheritdoc />
    public int WorldSize => mpi.WorldSize;

    /// <inheritdoc />
    public string Backend => "nccl";

    /// <inheritdoc />
    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var (data, type) = Memory(tensor);
        Launch(() => Nccl.AllReduce(data, data, (nuint)tensor.numel(), type, Op(op), comm, IntPtr.Zero), "ncclAllReduce");
    }

    /// <inheritdoc />
    public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum)
    {
        CollectiveChecks.ReduceScatter(input, output, WorldSize);
        var (send, type) = Memory(input);
        var (receive, _) = Memory(output);
        Launch(() => Nccl.ReduceScatter(send, receive, (nuint)output.numel(), type, Op(op), comm, IntPtr.Zero), "ncclReduceScatter");
    }

    /// <inheritdoc />
    public void AllGather(Tensor input, Tensor output)
    {
        CollectiveChecks.AllGather(input, output, WorldSize);
        var (send, type) = Memory(input);
        var (receive, _) = Memory(output);
        Launch(() => Nccl.AllGather(send, receive, (nuint)input.numel(), type, comm, IntPtr.Zero), "ncclAllGather");
    }

    /// <inheritdoc />
    public void Broadcast(Tensor tensor, int root)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        CollectiveChecks.Root(root, WorldSize);
        var (data, type) = Memory(tensor);
        Launch(() => Nccl.Broadcast(data, data, (nuint)tensor.numel(), type, root, comm, IntPtr.Zero), "ncclBroadcast");
    }

    /// <summary>An all-reduce of one element, completed on the device: NCCL has no barrier of its own.</summary>
    public void Barrier()
    {
        using var token = zeros(1, float32, Device);
        AllReduce(token);
    }

    /// <inheritdoc />
    /// <exception cref="NotSupportedException">Always but for a one-rank world: NCCL sub-groups (ncclCommSplit) are not bound yet.</exception>
    public ICommunicator Split(int color, int key)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(color);
        if (WorldSize == 1) return new SingleProcessCommunicator();
        throw new NotSupportedException("a (data, model) mesh over NCCL is not supported yet: train tensor parallel on CPU ranks (MPI), or use data parallelism (parallelism.model = 1) on GPUs");
    }

    /// <inheritdoc />
    public void Abort(int exitCode)
    {
        lock (gate)
        {
            if (comm != IntPtr.Zero) Nccl.CommAbort(comm);
            comm = IntPtr.Zero;
        }
        mpi.Abort(exitCode);
    }

    /// <summary>Destroys the NCCL communicator, then disposes the MPI one.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (comm != IntPtr.Zero) Nccl.CommDestroy(comm);
            comm = IntPtr.Zero;
        }
        mpi.Dispose();
    }

    private void Launch(Func<int> call, string name)
    {
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(comm == IntPtr.Zero, this);
            Nccl.Check(call(), name);
            torch.cuda.synchronize(Device); // see the remarks: blocking semantics on the default stream
        }
    }

    private (IntPtr Data, int Type) Memory(Tensor tensor)
    {
        if (tensor.device_type != DeviceType.CUDA || tensor.device_index != Device.index)
            throw new ArgumentException($"NcclCommunicator works on tensors on {Device}, but this one is on {tensor.device}: move it with .to({Device})");
        int type = tensor.dtype switch
        {
            ScalarType.Float32 => Nccl.Float32,
            ScalarType.Float64 => Nccl.Float64,
            ScalarType.BFloat16 => Nccl.BFloat16,
            ScalarType.Float16 => Nccl.Float16,
            ScalarType.Int64 => Nccl.Int64,
            ScalarType.Int32 => Nccl.Int32,
            ScalarType.Byte => Nccl.UInt8,
            ScalarType.Int8 => Nccl.Int8,
            _ => throw new ArgumentException($"NcclCommunicator cannot reduce {tensor.dtype} tensors: use float32, float64, bfloat16, float16, int64, int32, uint8 or int8"),
        };
        return (TensorMemory.DataPointer(tensor), type);
    }

    private static int Op(ReduceOp op) => op switch
    {
        ReduceOp.Sum => Nccl.OpSum,
        ReduceOp.Max => Nccl.OpMax,
        ReduceOp.Min => Nccl.OpMin,
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "unknown reduction"),
    };
}
