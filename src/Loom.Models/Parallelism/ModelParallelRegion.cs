using Loom.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Parallelism;

/// <summary>
/// The two collectives of Megatron-LM's tensor parallelism (Shoeybi et al. 2019, §3), as autograd functions over
/// the model group. A sharded sublayer sits between them: <see cref="Enter"/> (their <c>f</c>) before its
/// column-parallel kernels, <see cref="Exit"/> (their <c>g</c>) after its row-parallel kernel. Forward, each rank
/// computes its heads or hidden units from the same replicated input and <see cref="Exit"/> sums the partial
/// outputs; backward, the gradient reaching the replicated input is the sum of every rank's part, which
/// <see cref="Enter"/>'s backward all-reduces.
/// </summary>
public static class ModelParallelRegion
{
    /// <summary>Identity forward; the incoming gradient is all-reduced (summed) over <paramref name="group"/> backward.</summary>
    /// <param name="x">A replicated activation, the same on every rank of the group.</param>
    /// <param name="group">The model group.</param>
    public static Tensor Enter(Tensor x, ICommunicator group)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(group);
        return group.WorldSize == 1 ? x : EnterFunction.apply(x, group);
    }

    /// <summary>All-reduces (sums) <paramref name="x"/> over <paramref name="group"/> forward; identity backward.</summary>
    /// <param name="x">This rank's partial sum of a sublayer's output.</param>
    /// <param name="group">The model group.</param>
    public static Tensor Exit(Tensor x, ICommunicator group)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(group);
        return group.WorldSize == 1 ? x : ExitFunction.apply(x, group);
    }

    private const string GroupKey = "group";

    private static Tensor AllReduced(Tensor x, ICommunicator group)
    {
        var sum = x.contiguous().clone(); // never the caller's tensor: autograd may still need it
        group.AllReduce(sum);
        return sum;
    }

    private sealed class EnterFunction : autograd.SingleTensorFunction<EnterFunction>
    {
        public override string Name => "ModelParallelEnter";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            ctx.save_data(GroupKey, vars[1]);
            return ((Tensor)vars[0]).alias();
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output) =>
            [AllReduced(grad_output, (ICommunicator)ctx.get_data(GroupKey)), null!];
    }

    private sealed class ExitFunction : autograd.SingleTensorFunction<ExitFunction>
    {
        public override string Name => "ModelParallelExit";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars) =>
            AllReduced((Tensor)vars[0], (ICommunicator)vars[1]);

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output) => [grad_output.alias(), null!];
    }
}
