using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models.Reformer;

/// <summary>
/// A layer whose forward depends on per-call state besides its input (the seed of LSH attention's random
/// rotations, the segment ids of packed rows) that a <see cref="ReversibleStack"/> must replay when its backward
/// re-runs the layer: the stack captures the state in its forward and restores it before recomputing.
/// </summary>
public interface IReplayableLayer
{
    /// <summary>The state the next forward would use (called by the stack's forward).</summary>
    object CaptureState();

    /// <summary>Sets the state back to one <see cref="CaptureState"/> returned (called by the stack's backward before re-running the layer).</summary>
    void RestoreState(object state);
}

/// <summary>
/// A reversible residual block (RevNet, Gomez et al. 2017; Reformer §3): Y₁ = X₁ + F(X₂), Y₂ = X₂ + G(Y₁). Its
/// inputs follow from its outputs, X₂ = Y₂ − G(Y₁), X₁ = Y₁ − F(X₂), so a stack of them need not keep
/// activations for the backward pass (see <see cref="ReversibleStack"/>). In the Reformer F is attention and G the
/// feed-forward layer.
/// </summary>
public sealed class ReversibleBlock : nn.Module
{
    // Field names are the state-dict keys.
    private readonly nn.Module<Tensor, Tensor> f;
    private readonly nn.Module<Tensor, Tensor> g;

    /// <summary>Creates the block from its two residual functions, which it owns from now on.</summary>
    /// <param name="f">F, (B, T, D) → (B, T, D).</param>
    /// <param name="g">G, (B, T, D) → (B, T, D).</param>
    public ReversibleBlock(nn.Module<Tensor, Tensor> f, nn.Module<Tensor, Tensor> g) : base(nameof(ReversibleBlock))
    {
        this.f = f ?? throw new ArgumentNullException(nameof(f));
        this.g = g ?? throw new ArgumentNullException(nameof(g));
        RegisterComponents();
    }

    /// <summary>F, the first residual function.</summary>
    public nn.Module<Tensor, Tensor> F => f;

    /// <summary>G, the second residual function.</summary>
    public nn.Module<Tensor, Tensor> G => g;

    /// <summary>Y₁ = X₁ + F(X₂), Y₂ = X₂ + G(Y₁); all (B, T, D).</summary>
    public (Tensor Y1, Tensor Y2) Forward(Tensor x1, Tensor x2)
    {
        var y1 = x1 + f.call(x2);
        var y2 = x2 + g.call(y1);
        return (y1, y2);
    }

    /// <summary>The inverse: X₂ = Y₂ − G(Y₁), X₁ = Y₁ − F(X₂); all (B, T, D).</summary>
    public (Tensor X1, Tensor X2) Inverse(Tensor y1, Tensor y2)
    {
        var x2 = y2 - g.call(y1);
        var x1 = y1 - f.call(x2);
        return (x1, x2);
    }
}

/// <summary>
/// A stack of <see cref="ReversibleBlock"/>s. Reversible (the default, when autograd is recording), the forward
/// runs every block without recording a graph and keeps only the stack's outputs Y₁, Y₂; the backward walks the
/// blocks in reverse, rebuilding each block's inputs from its outputs and re-running that block's F and G to get
/// the gradients of its inputs and parameters. So the activations kept for training do not grow with depth: at any
/// time there are the outputs of one block and the graph of one F or G (plus, as always, parameters and their
/// gradients), at the price of running F and G twice. Not reversible, it is the plain composition, whose autograd
/// graph keeps every block's activations (the reference the reversible stack must match).
/// </summary>
/// <remarks>
/// The rebuilt inputs equal the originals only up to rounding (X₁ = (X₁ + F(X₂)) − F(X₂)), so the gradients match
/// the plain stack's to fp32 tolerance, not bit for bit. F and G must be deterministic (no dropout, or dropout
/// whose randomness is replayed), since the backward runs them again; layers whose forward depends on per-call state
/// (an LSH attention's rotation seed) implement <see cref="IReplayableLayer"/>, whose state the stack captures in the
/// forward and restores before recomputing, so that LSH hashes with the same rotations both times. Parameter gradients are returned all at once at the end of
/// the backward, so parameter-sized temporaries (not activations) do grow with depth.
/// </remarks>
public sealed class ReversibleStack : nn.Module
{
    private readonly ModuleList<ReversibleBlock> blocks;

    /// <summary>Creates the stack, which owns <paramref name="blocks"/> from now on.</summary>
    /// <param name="blocks">The blocks, first to last.</param>
    /// <param name="reversible">Whether the backward recomputes activations instead of keeping them.</param>
    public ReversibleStack(IEnumerable<ReversibleBlock> blocks, bool reversible = true) : base(nameof(ReversibleStack))
    {
        ArgumentNullException.ThrowIfNull(blocks);
        this.blocks = nn.ModuleList(blocks.ToArray());
        if (this.blocks.Count == 0)
            throw new ArgumentException("a reversible stack needs at least one block", nameof(blocks));
        Reversible = reversible;
        RegisterComponents();
    }

    /// <summary>Whether the backward recomputes activations (true) or autograd keeps them (false).</summary>
    public bool Reversible { get; }

    /// <summary>The blocks, first to last.</summary>
    public IReadOnlyList<ReversibleBlock> Blocks => blocks.ToList();

    /// <summary>The stack on (X₁, X₂), each (B, T, D); returns (Y₁, Y₂) of the last block.</summary>
    public (Tensor Y1, Tensor Y2) Forward(Tensor x1, Tensor x2)
    {
        ArgumentNullException.ThrowIfNull(x1);
        ArgumentNullException.ThrowIfNull(x2);
        if (!Reversible || !is_grad_enabled())
        {
            foreach (var block in blocks)
                (x1, x2) = block.Forward(x1, x2);
            return (x1, x2);
        }
        // The parameters go in as inputs of the autograd function, so that the backward's gradients reach them
        // (through .backward() and torch.autograd.grad alike) and the outputs require grad even when X does not.
        var trainable = parameters().Where(p => p.requires_grad).ToArray();
        var replay = modules().OfType<IReplayableLayer>().Select(l => (l, l.CaptureState())).ToArray();
        var vars = new object[] { x1, x2, new Saved(this, trainable, replay) }.Concat(trainable).ToArray();
        var outputs = ReversibleFunction.apply(vars);
        return (outputs[0], outputs[1]);
    }

    /// <summary>The blocks' inverses in reverse: (X₁, X₂) of the first block from (Y₁, Y₂) of the last.</summary>
    public (Tensor X1, Tensor X2) Inverse(Tensor y1, Tensor y2)
    {
        for (var i = blocks.Count - 1; i >= 0; i--)
            (y1, y2) = blocks[i].Inverse(y1, y2);
        return (y1, y2);
    }

    private sealed record Saved(ReversibleStack Stack, Parameter[] Trainable, (IReplayableLayer Layer, object State)[] Replay);

    private const string SavedKey = "stack";

    private sealed class ReversibleFunction : autograd.MultiTensorFunction<ReversibleFunction>
    {
        public override string Name => "ReversibleStack";

        // Runs without grad (apply turns it off); intermediate outputs are freed as soon as the next block has them.
        public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var saved = (Saved)vars[2];
            ctx.save_data(SavedKey, saved);
            using var scope = NewDisposeScope();
            var (y1, y2) = ((Tensor)vars[0], (Tensor)vars[1]);
            foreach (var block in saved.Stack.blocks)
            {
                var (n1, n2) = block.Forward(y1, y2);
                scope.DisposeEverythingBut(n1, n2); // the previous pair included
                (y1, y2) = (n1, n2);
            }
            ctx.save_for_backward([y1, y2]);
            scope.MoveToOuter(y1, y2);
            return [y1, y2];
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grad_outputs)
        {
            var saved = (Saved)ctx.get_data(SavedKey);
            var outputs = ctx.get_saved_variables();
            var index = new Dictionary<Parameter, int>(ReferenceEqualityComparer.Instance);
            for (var i = 0; i < saved.Trainable.Length; i++)
                index[saved.Trainable[i]] = i;
            var parameterGrads = new Tensor?[saved.Trainable.Length];
            foreach (var (layer, state) in saved.Replay)
                layer.RestoreState(state); // the forward's rotations (and segments), whatever ran since

            using var scope = NewDisposeScope();
            var (y1, y2) = (outputs[0].detach(), outputs[1].detach());
            var (dy1, dy2) = (grad_outputs[0], grad_outputs[1]);
            var blocks = saved.Stack.blocks;
            for (var b = blocks.Count - 1; b >= 0; b--)
            {
                var block = blocks[b];
                Tensor x1, x2, dx1, dx2;
                using (enable_grad())
                {
                    // G: Y₂ = X₂ + G(Y₁) gives X₂ = Y₂ − G(Y₁) and dY₁ += (∂G/∂Y₁)ᵀ dY₂.
                    var z1 = y1.detach().requires_grad_(true);
                    var gOut = block.G.call(z1);
                    var gParams = Trainable(block.G, index);
                    var gGrads = autograd.grad([gOut], [z1, .. gParams.Select(p => (Tensor)p)], [dy2]);
                    dx1 = dy1 + gGrads[0];                      // dX₁ = dY₁ + (∂G/∂Y₁)ᵀ dY₂
                    Accumulate(parameterGrads, index, gParams, gGrads);
                    x2 = (y2 - gOut).detach().requires_grad_(true);

                    // F: Y₁ = X₁ + F(X₂) gives X₁ = Y₁ − F(X₂) and dX₂ = dY₂ + (∂F/∂X₂)ᵀ dX₁.
                    var fOut = block.F.call(x2);
                    var fParams = Trainable(block.F, index);
                    var fGrads = autograd.grad([fOut], [x2, .. fParams.Select(p => (Tensor)p)], [dx1]);
                    dx2 = dy2 + fGrads[0];
                    Accumulate(parameterGrads, index, fParams, fGrads);
                    x1 = (y1 - fOut).detach();
                    x2 = x2.detach();
                }
                // Only the carried pair and the gradient sums survive the block: this is what keeps memory flat.
                scope.DisposeEverythingBut([x1, x2, dx1, dx2, .. parameterGrads.OfType<Tensor>()]);
                (y1, y2, dy1, dy2) = (x1, x2, dx1, dx2);
            }
            var result = new List<Tensor> { dy1, dy2, null! };
            result.AddRange(parameterGrads.Select(g => g ?? throw new InvalidOperationException("a trainable parameter of the stack is in no block's F or G")));
            scope.MoveToOuter(result.Where(t => t is not null).ToArray());
            return result;
        }

        private static List<Parameter> Trainable(nn.Module module, Dictionary<Parameter, int> index) =>
            module.parameters().Where(index.ContainsKey).ToList();

        private static void Accumulate(Tensor?[] sums, Dictionary<Parameter, int> index, List<Parameter> parameters, IList<Tensor> grads)
        {
            for (var i = 0; i < parameters.Count; i++)
            {
                var k = index[parameters[i]];
                sums[k] = sums[k] is { } sum ? sum + grads[i + 1] : grads[i + 1]; // a parameter shared by blocks sums
            }
        }
    }
}
