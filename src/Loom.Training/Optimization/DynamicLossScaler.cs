using Loom.Distributed;
using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Loom.Training.Optimization;

/// <summary>
/// Dynamic loss scaling for float16 training (Micikevicius et al. 2018; PyTorch's GradScaler): the loss is multiplied
/// by a scale S before the backward pass, so that small gradients survive float16's narrow range, and the float32
/// gradients are divided by S before clipping and the update. An update whose gradients are not finite on any rank
/// is skipped and S halved; after <c>growthInterval</c> clean updates in a row S doubles.
/// </summary>
public sealed class DynamicLossScaler
{
    private readonly int growthInterval;
    private int cleanInARow;

    /// <summary>Starts at <paramref name="initialScale"/>.</summary>
    /// <param name="initialScale">The first scale, at least 1.</param>
    /// <param name="growthInterval">Clean updates in a row after which the scale doubles, positive.</param>
    public DynamicLossScaler(double initialScale, int growthInterval)
    {
        if (!(initialScale >= 1) || !double.IsFinite(initialScale)) throw new ArgumentOutOfRangeException(nameof(initialScale), initialScale, "the loss scale must be a finite number of at least 1");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(growthInterval);
        Scale = initialScale;
        this.growthInterval = growthInterval;
    }

    /// <summary>The current scale.</summary>
    public double Scale { get; private set; }

    /// <summary>Updates skipped for non-finite gradients so far.</summary>
    public long Skipped { get; private set; }

    /// <summary>The loss to differentiate: <paramref name="loss"/> · S.</summary>
    public Tensor ScaleLoss(Tensor loss) => loss * Scale;

    /// <summary>
    /// Checks the (already reduced) gradients of <paramref name="parameters"/> on every rank of <paramref name="world"/>.
    /// When all are finite, divides them by S and returns true (the update goes ahead); otherwise drops them, halves S
    /// and returns false (the update is skipped). Collective: every rank calls it.
    /// </summary>
    public bool Unscale(IEnumerable<Parameter> parameters, ICommunicator world)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(world);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var list = parameters.ToList();
        var grads = list.Select(p => p.grad).OfType<Tensor>().ToList();
        bool finite = grads.Count == 0 || stack(grads.Select(g => g.isfinite().all()).ToArray()).all().item<bool>(); // one host read per update
        if (world.Any(!finite))
        {
            foreach (var p in list) p.grad = null;
            Scale = Math.Max(1, Scale / 2);
            Skipped++;
            cleanInARow = 0;
            return false;
        }
        foreach (var g in grads) g.div_(Scale);
        if (++cleanInARow == growthInterval)
        {
            Scale *= 2;
            cleanInARow = 0;
        }
        return true;
    }

    /// <summary>Restores the scale a checkpoint recorded (its count of clean updates in a row starts again).</summary>
    public void Restore(double scale, long skipped)
    {
        Scale = scale;
        Skipped = skipped;
        cleanInARow = 0;
    }
}
