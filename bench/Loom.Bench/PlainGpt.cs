using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Loom.Bench;

// The "plain TorchSharp" contender: a GPT written directly against TorchSharp's own modules, nanoGPT
// style, with nothing from Loom. Its forward is Loom's DecoderLm with the GPT switches (serial block,
// GELU, learned positions, multi-head attention, LayerNorm with bias, biases, shared embeddings with
// logits scaled by 1/sqrt(d_model)), so both contenders do the same FLOPs. The one layout difference,
// by default, is nanoGPT's fused q/k/v projection (one Linear(D, 3D) instead of Loom's three
// Linear(D, D)): same parameters and FLOPs, one GEMM and two parameter tensors instead of three GEMMs
// and six tensors. --qkv separate gives the plain model Loom's layout, to tell the two effects apart.

/// <summary>Shape of <see cref="PlainGpt"/>.</summary>
internal sealed record PlainGptConfig(int Vocab, int BlockSize, int Layers, int Heads, int HeadDim, int Dim, int MlpDim, double Eps, bool FusedQkv);

/// <summary>
/// nanoGPT's CausalSelfAttention: q/k/v projection (fused, or three kernels as in Loom),
/// scaled_dot_product_attention, output projection.
/// </summary>
internal sealed class PlainAttention : nn.Module<Tensor, Tensor>
{
    private readonly Linear? c_attn;             // (3·H·Dh, D), fused only
    private readonly Linear? c_q, c_k, c_v;      // (H·Dh, D) each, separate only
    private readonly Linear c_proj;              // (D, H·Dh)
    private readonly int heads, headDim;

    public PlainAttention(PlainGptConfig c, Device device) : base(nameof(PlainAttention))
    {
        heads = c.Heads;
        headDim = c.HeadDim;
        if (c.FusedQkv)
        {
            c_attn = nn.Linear(c.Dim, 3 * heads * headDim, hasBias: true, device: device);
        }
        else
        {
            c_q = nn.Linear(c.Dim, heads * headDim, hasBias: true, device: device);
            c_k = nn.Linear(c.Dim, heads * headDim, hasBias: true, device: device);
            c_v = nn.Linear(c.Dim, heads * headDim, hasBias: true, device: device);
        }
        c_proj = nn.Linear(heads * headDim, c.Dim, hasBias: true, device: device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], t = x.shape[1];
        var qkv = c_attn is not null
            ? c_attn.forward(x).split(heads * headDim, dim: 2)              // 3 × (B, T, H·Dh)
            : new[] { c_q!.forward(x), c_k!.forward(x), c_v!.forward(x) };  // 3 × (B, T, H·Dh)
        var q = qkv[0].view(b, t, heads, headDim).transpose(1, 2);          // (B, H, T, Dh)
        var k = qkv[1].view(b, t, heads, headDim).transpose(1, 2);          // (B, H, T, Dh)
        var v = qkv[2].view(b, t, heads, headDim).transpose(1, 2);          // (B, H, T, Dh)
        var y = F.scaled_dot_product_attention(q, k, v, is_casual: true);   // (B, H, T, Dh)
        y = y.transpose(1, 2).contiguous().view(b, t, heads * headDim);     // (B, T, H·Dh)
        return c_proj.forward(y);                                           // (B, T, D)
    }
}

/// <summary>nanoGPT's MLP: Linear(D, 4D), exact GELU, Linear(4D, D).</summary>
internal sealed class PlainMlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear c_fc;   // (F, D)
    private readonly Linear c_proj; // (D, F)

    public PlainMlp(PlainGptConfig c, Device device) : base(nameof(PlainMlp))
    {
        c_fc = nn.Linear(c.Dim, c.MlpDim, hasBias: true, device: device);
        c_proj = nn.Linear(c.MlpDim, c.Dim, hasBias: true, device: device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => c_proj.forward(F.gelu(c_fc.forward(x))); // (B, T, D) -> (B, T, F) -> (B, T, D)
}

/// <summary>nanoGPT's Block: pre-norm serial residual block.</summary>
internal sealed class PlainBlock : nn.Module<Tensor, Tensor>
{
    private readonly LayerNorm ln_1;
    private readonly PlainAttention attn;
    private readonly LayerNorm ln_2;
    private readonly PlainMlp mlp;

    public PlainBlock(PlainGptConfig c, Device device) : base(nameof(PlainBlock))
    {
        ln_1 = nn.LayerNorm(c.Dim, c.Eps, device: device);
        attn = new PlainAttention(c, device);
        ln_2 = nn.LayerNorm(c.Dim, c.Eps, device: device);
        mlp = new PlainMlp(c, device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        x = x + attn.forward(ln_1.forward(x)); // (B, T, D)
        return x + mlp.forward(ln_2.forward(x)); // (B, T, D)
    }
}

/// <summary>nanoGPT's GPT with the output projection tied to the token embedding.</summary>
internal sealed class PlainGpt : nn.Module<Tensor, Tensor>
{
    private readonly Embedding wte; // (V, D)
    private readonly Embedding wpe; // (BlockSize, D)
    private readonly ModuleList<PlainBlock> h;
    private readonly LayerNorm ln_f;
    private readonly double logitScale;

    public PlainGpt(PlainGptConfig c, Device device) : base(nameof(PlainGpt))
    {
        wte = nn.Embedding(c.Vocab, c.Dim, device: device);
        wpe = nn.Embedding(c.BlockSize, c.Dim, device: device);
        h = new ModuleList<PlainBlock>(Enumerable.Range(0, c.Layers).Select(_ => new PlainBlock(c, device)).ToArray());
        ln_f = nn.LayerNorm(c.Dim, c.Eps, device: device);
        // Loom scales tied logits by 1/sqrt(d_model) (PaLM); done here too so the math is the same.
        logitScale = 1.0 / Math.Sqrt(c.Dim);
        RegisterComponents();
    }

    /// <summary>Logits, (B, T) -> (B, T, V).</summary>
    public override Tensor forward(Tensor idx)
    {
        long t = idx.shape[1];
        var pos = arange(t, dtype: int64, device: idx.device);        // (T)
        var x = wte.forward(idx) + wpe.forward(pos);                   // (B, T, D)
        foreach (var block in h) x = block.forward(x);                 // (B, T, D)
        x = ln_f.forward(x);                                           // (B, T, D)
        return F.linear(x, wte.weight!) * logitScale;                  // (B, T, V)
    }

    /// <summary>Mean next-token cross-entropy of <paramref name="idx"/> against <paramref name="targets"/>, both (B, T).</summary>
    public Tensor Loss(Tensor idx, Tensor targets)
    {
        var logits = forward(idx);                                                           // (B, T, V)
        return F.cross_entropy(logits.view(-1, logits.shape[^1]), targets.reshape(-1));     // []
    }

    /// <summary>nanoGPT's optimizer: TorchSharp's AdamW, weight decay on matrices only (two parameter groups).</summary>
    public optim.Optimizer CreateOptimizer()
    {
        var decay = parameters().Where(p => p.dim() >= 2).ToList();
        var noDecay = parameters().Where(p => p.dim() < 2).ToList();
        return optim.AdamW(
            new[]
            {
                new AdamW.ParamGroup(decay, lr: TrainStepSettings.LearningRate, beta1: TrainStepSettings.Beta1, beta2: TrainStepSettings.Beta2, eps: TrainStepSettings.Epsilon, weight_decay: TrainStepSettings.WeightDecay),
                new AdamW.ParamGroup(noDecay, lr: TrainStepSettings.LearningRate, beta1: TrainStepSettings.Beta1, beta2: TrainStepSettings.Beta2, eps: TrainStepSettings.Epsilon, weight_decay: 0),
            },
            lr: TrainStepSettings.LearningRate, beta1: TrainStepSettings.Beta1, beta2: TrainStepSettings.Beta2, eps: TrainStepSettings.Epsilon);
    }

    /// <summary>
    /// Copies the weights of a Loom GPT (Loom's <c>named_parameters</c> names) into this model, so that
    /// both contenders start from the same point and their losses can be compared.
    /// </summary>
    public void CopyFromLoom(IReadOnlyDictionary<string, Tensor> loom, int layers)
    {
        using var _ = NewDisposeScope();
        using var noGrad = no_grad();
        var mine = named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);
        void Copy(string to, Tensor from)
        {
            if (!mine.TryGetValue(to, out var target)) throw new InvalidOperationException($"plain model has no parameter '{to}'");
            if (!target.shape.SequenceEqual(from.shape))
                throw new InvalidOperationException($"'{to}' is [{string.Join(", ", target.shape)}], Loom's is [{string.Join(", ", from.shape)}]");
            target.copy_(from);
        }
        Copy("wte.weight", loom["embed"]);
        Copy("wpe.weight", loom["pos_embed"]);
        for (int l = 0; l < layers; l++)
        {
            string lb = $"blocks.{l}.", pb = $"h.{l}.";
            Copy(pb + "ln_1.weight", loom[lb + "norm.weight"]);
            Copy(pb + "ln_1.bias", loom[lb + "norm.bias"]);
            Copy(pb + "ln_2.weight", loom[lb + "mlp_norm.weight"]);
            Copy(pb + "ln_2.bias", loom[lb + "mlp_norm.bias"]);
            if (mine.ContainsKey(pb + "attn.c_attn.weight"))
            {
                Copy(pb + "attn.c_attn.weight", cat(new[] { loom[lb + "attn.wq.weight"], loom[lb + "attn.wk.weight"], loom[lb + "attn.wv.weight"] }, 0)); // (3·H·Dh, D)
                Copy(pb + "attn.c_attn.bias", cat(new[] { loom[lb + "attn.wq.bias"], loom[lb + "attn.wk.bias"], loom[lb + "attn.wv.bias"] }, 0));       // (3·H·Dh)
            }
            else
            {
                foreach (var (plainName, loomName) in new[] { ("c_q", "wq"), ("c_k", "wk"), ("c_v", "wv") })
                {
                    Copy($"{pb}attn.{plainName}.weight", loom[$"{lb}attn.{loomName}.weight"]);
                    Copy($"{pb}attn.{plainName}.bias", loom[$"{lb}attn.{loomName}.bias"]);
                }
            }
            Copy(pb + "attn.c_proj.weight", loom[lb + "attn.wo.weight"]);
            Copy(pb + "attn.c_proj.bias", loom[lb + "attn.wo.bias"]);
            Copy(pb + "mlp.c_fc.weight", loom[lb + "mlp.up.weight"]);
            Copy(pb + "mlp.c_fc.bias", loom[lb + "mlp.up.bias"]);
            Copy(pb + "mlp.c_proj.weight", loom[lb + "mlp.down.weight"]);
            Copy(pb + "mlp.c_proj.bias", loom[lb + "mlp.down.bias"]);
        }
        Copy("ln_f.weight", loom["final_norm.weight"]);
        Copy("ln_f.bias", loom["final_norm.bias"]);
    }
}

/// <summary>
/// The plain side: <see cref="PlainGpt"/>, TorchSharp's <c>torch.optim.AdamW</c> and
/// <c>torch.nn.utils.clip_grad_norm_</c>, one step as a nanoGPT training loop takes it.
/// </summary>
internal sealed class PlainContender : ITrainStepContender
{
    private readonly PlainGpt model;
    private readonly optim.Optimizer optimizer;
    private readonly List<Parameter> parameters;

    public PlainContender(PlainGptConfig config, Device device)
    {
        model = new PlainGpt(config, device);
        Name = $"plain TorchSharp (nanoGPT-style, {(config.FusedQkv ? "fused" : "separate")} q/k/v, torch.optim.AdamW)";
        model.train();
        parameters = model.parameters().ToList();
        optimizer = model.CreateOptimizer();
    }

    public PlainGpt Model => model;

    public string Name { get; }

    public long ParameterCount => parameters.Sum(p => p.NumberOfElements);

    public float EvalLoss(Tensor inputs, Tensor targets)
    {
        using var _ = NewDisposeScope();
        using var noGrad = no_grad();
        return model.Loss(inputs, targets).item<float>();
    }

    public StepTiming Step(Tensor inputs, Tensor targets, PhaseClock clock)
    {
        using var _ = NewDisposeScope();
        clock.Start();
        optimizer.zero_grad();
        clock.Lap(Phase.ZeroGrad);
        var loss = model.Loss(inputs, targets); // []
        clock.Lap(Phase.Forward);
        loss.backward();
        clock.Lap(Phase.Backward);
        nn.utils.clip_grad_norm_(parameters, TrainStepSettings.ClipNorm);
        clock.Lap(Phase.Clip);
        optimizer.step();
        clock.Lap(Phase.Optimizer);
        return clock.Stop(loss.item<float>());
    }

    public void Dispose()
    {
        optimizer.Dispose();
        model.Dispose();
    }
}
