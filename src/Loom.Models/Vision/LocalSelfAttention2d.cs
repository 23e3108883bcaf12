using Loom.Models.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models.Vision;

/// <summary>
/// Stand-alone local self-attention over images (Ramachandran et al. 2019, "Stand-Alone Self-Attention in
/// Vision Models", section 2): each pixel ij attends over its k×k neighbourhood N_k(ij) with
/// y_ij = Σ_{ab ∈ N_k(ij)} softmax_ab(q_ijᵀ (k_ab + r_{a−i,b−j})) v_ab, where q = W_Q x, k = W_K x, v = W_V x are
/// 1×1 projections and r_{a−i,b−j} concatenates a row-offset embedding and a column-offset embedding (d/2 each).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Multi-head as in the paper: the input channels are split depthwise into N groups and each head has its own
/// projections (d_out/N × d_in/N) and its own relative embeddings; the heads' outputs are concatenated.</item>
/// <item>Borders: the neighbourhood is cut by the image; keys outside it (zero padding) are masked out of the softmax.</item>
/// <item>Logits are scaled by 1/√(d_out/N) as in Transformer attention (the paper's equation 2 leaves the scale out).</item>
/// <item>With <c>valueMixtures</c> M &gt; 1 this is the paper's spatially-aware attention stem (section 3.2): the value of
/// ab is (Σ_m p(a,b,m) W_V^m) x_ab with p(a,b,m) = softmax_m((emb_row(a) + emb_col(b))ᵀ ν^m), a and b taken relative to
/// the window, so that a value depends on where it sits in the neighbourhood.</item>
/// </list>
/// <see cref="forward"/> is the optimized path (pad, unfold windows); <see cref="ForwardReference"/> is a dense attention
/// over all pixel pairs masked to the window, with no padding at all. Tests hold the two to agree.
/// </remarks>
public sealed class LocalSelfAttention2d : nn.Module<Tensor, Tensor>
{
    // Field names are the state-dict keys.
    private readonly Parameter query;           // (N, Dh, Cin/N): W_Q per head
    private readonly Parameter key;             // (N, Dh, Cin/N): W_K per head
    private readonly Parameter value;           // (N, M·Dh, Cin/N): W_V^m per head, M mixtures
    private readonly Parameter relative_rows;   // (N, K, Dh/2): r for row offsets −p..p
    private readonly Parameter relative_columns; // (N, K, Dh/2): r for column offsets −p..p
    private readonly Parameter? mixture_rows;    // (K, E): emb_row, stem only
    private readonly Parameter? mixture_columns; // (K, E): emb_col, stem only
    private readonly Parameter? mixture_vectors; // (M, E): ν^m, stem only

    /// <summary>
    /// Creates the layer on <paramref name="device"/> with weights from <paramref name="generator"/>: projections
    /// N(0, 1/(d_in/N)), relative and mixture embeddings N(0, 1).
    /// </summary>
    /// <param name="inChannels">d_in, divisible by <paramref name="heads"/>.</param>
    /// <param name="outChannels">d_out, divisible by <paramref name="heads"/> with an even width per head.</param>
    /// <param name="kernelSize">k, odd: the neighbourhood is k×k around each pixel.</param>
    /// <param name="heads">N attention heads.</param>
    /// <param name="valueMixtures">M value matrices mixed by position (the attention stem), or 1 for plain values.</param>
    /// <param name="device">Where the parameters live (meta: shapes only).</param>
    /// <param name="generator">Draws the initial weights (a CPU generator), or null for torch's default.</param>
    /// <exception cref="ArgumentException">A size is not positive, k is even, or the channels do not split into heads.</exception>
    public LocalSelfAttention2d(int inChannels, int outChannels, int kernelSize, int heads, int valueMixtures = 1, Device? device = null, Generator? generator = null)
        : base(nameof(LocalSelfAttention2d))
    {
        if (inChannels <= 0 || outChannels <= 0 || heads <= 0 || valueMixtures <= 0)
            throw new ArgumentException($"channels ({inChannels} → {outChannels}), heads ({heads}) and value mixtures ({valueMixtures}) must be positive");
        if (kernelSize <= 0 || kernelSize % 2 == 0) throw new ArgumentException($"kernel size {kernelSize} must be a positive odd number (the window is centred on its pixel)");
        if (inChannels % heads != 0 || outChannels % heads != 0 || (outChannels / heads) % 2 != 0)
            throw new ArgumentException($"{inChannels} input and {outChannels} output channels must split into {heads} heads with an even output width per head (half for row, half for column offsets)");
        InChannels = inChannels;
        OutChannels = outChannels;
        KernelSize = kernelSize;
        Heads = heads;
        ValueMixtures = valueMixtures;
        int dh = outChannels / heads, cin = inChannels / heads;
        query = NewParameter([heads, dh, cin], 1.0 / Math.Sqrt(cin), device, generator);
        key = NewParameter([heads, dh, cin], 1.0 / Math.Sqrt(cin), device, generator);
        value = NewParameter([heads, valueMixtures * dh, cin], 1.0 / Math.Sqrt(cin), device, generator);
        relative_rows = NewParameter([heads, kernelSize, dh / 2], 1, device, generator);
        relative_columns = NewParameter([heads, kernelSize, dh / 2], 1, device, generator);
        if (valueMixtures > 1)
        {
            mixture_rows = NewParameter([kernelSize, outChannels], 1, device, generator);
            mixture_columns = NewParameter([kernelSize, outChannels], 1, device, generator);
            mixture_vectors = NewParameter([valueMixtures, outChannels], 1.0 / Math.Sqrt(outChannels), device, generator);
        }
        RegisterComponents();
    }

    /// <summary>d_in.</summary>
    public int InChannels { get; }

    /// <summary>d_out.</summary>
    public int OutChannels { get; }

    /// <summary>k: the window is k×k.</summary>
    public int KernelSize { get; }

    /// <summary>N heads.</summary>
    public int Heads { get; }

    /// <summary>M value mixtures (1: plain values; more: the spatially-aware stem).</summary>
    public int ValueMixtures { get; }

    /// <summary>
    /// Forward FLOPs (multiply-adds × 2) on an <paramref name="height"/>×<paramref name="width"/> input: the three
    /// grouped 1×1 projections (2·d_in·d_out/N per pixel each, M of them for the values), the logits q·(k + r) and the
    /// weighted sum of values (2·d_out·k² per pixel each), and for the stem the mixing of M value maps (2·M·d_out·k²).
    /// Softmax, masking and the windows' border cut are not counted (every pixel is charged a full window).
    /// </summary>
    public long Flops(int height, int width)
    {
        long pixels = (long)height * width, kk = (long)KernelSize * KernelSize;
        long projections = (2L + ValueMixtures) * 2L * InChannels * OutChannels / Heads;
        long attention = 2L * 2L * OutChannels * kk;
        long mixing = ValueMixtures > 1 ? 2L * ValueMixtures * OutChannels * kk : 0;
        return pixels * (projections + attention + mixing);
    }

    /// <summary>Attention over k×k windows: <paramref name="x"/> (B, d_in, H, W) → (B, d_out, H, W).</summary>
    /// <remarks>
    /// Window products are broadcast multiplies and sums rather than einsums: an einsum over (B, N, H, W) batches of
    /// 1×Dh by Dh×K² matrices runs as that many tiny matmuls, far slower on a CPU. The stem folds its mixture into the
    /// attention weights: Σ_ab a_ab Σ_m p_m(ab) v^m_ab = Σ_m Σ_ab (a_ab p_m(ab)) v^m_ab, so no mixed values are formed.
    /// </remarks>
    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], h = x.shape[2], w = x.shape[3];
        int n = Heads, dh = OutChannels / Heads, kk = KernelSize * KernelSize, m = ValueMixtures;
        var q = Project(query, x);                                                       // (B, N, Dh, H, W)
        var k = Windows(Project(key, x));                                                 // (B, N, Dh, H, W, K²)
        var r = RelativeEmbeddings();                                                     // (N, Dh, K²)
        var logits = (q.unsqueeze(-1) * k).sum(2)                                         // (B, N, H, W, K²): q·k
            + einsum("bndhw,ndk->bnhwk", q, r);                                           // + q·r
        logits = logits / Math.Sqrt(dh);
        var inside = Windows(ones([1, 1, 1, h, w], dtype: x.dtype, device: x.device))[0, 0, 0] > 0.5; // (H, W, K²)
        var attention = logits.masked_fill(inside.logical_not(), double.NegativeInfinity).softmax(-1); // (B, N, H, W, K²)
        var v = Windows(Project(value, x)).view(b, n, m, dh, h, w, kk);                  // (B, N, M, Dh, H, W, K²)
        var weights = m > 1
            ? attention.unsqueeze(2) * MixtureWeights().view(1, 1, m, 1, 1, kk)           // (B, N, M, H, W, K²): a_ab · p_m(ab)
            : attention.unsqueeze(2);                                                     // (B, N, 1, H, W, K²)
        var y = (weights.unsqueeze(3) * v).sum([2, 6]);                                  // (B, N, Dh, H, W)
        return y.reshape(b, OutChannels, h, w);                                          // (B, d_out, H, W)
    }

    /// <summary>
    /// The reference path: dense attention from every pixel to every pixel of the image, with logits q_ijᵀ(k_ab + r_{a−i,b−j})
    /// and keys outside the k×k window masked out; no padding, no windows. Quadratic in H·W: for tests on small images.
    /// </summary>
    public Tensor ForwardReference(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        long b = x.shape[0], h = x.shape[2], w = x.shape[3], hw = h * w;
        int n = Heads, dh = OutChannels / Heads, p = KernelSize / 2;
        // Offset index (a−i+p)·K + (b−j+p) of every (query, key) pixel pair, and whether the key is in the query's window.
        var index = new long[hw * hw];
        var inWindow = new bool[hw * hw];
        for (int qi = 0; qi < hw; qi++)
            for (int ki = 0; ki < hw; ki++)
            {
                long dr = ki / w - qi / w, dc = ki % w - qi % w;
                bool inside = Math.Abs(dr) <= p && Math.Abs(dc) <= p;
                inWindow[qi * hw + ki] = inside;
                index[qi * hw + ki] = inside ? (dr + p) * KernelSize + dc + p : 0;
            }
        var offsets = tensor(index, device: x.device).view(hw, hw);                      // (HW, HW)
        var mask = tensor(inWindow, device: x.device).view(hw, hw);                      // (HW, HW)
        var q = Project(query, x).reshape(b, n, dh, hw);                                 // (B, N, Dh, HW)
        var k = Project(key, x).reshape(b, n, dh, hw);                                   // (B, N, Dh, HW)
        var v = Project(value, x).reshape(b, n, ValueMixtures, dh, hw);                  // (B, N, M, Dh, HW)
        var r = RelativeEmbeddings().index_select(2, offsets.flatten()).view(n, dh, hw, hw); // (N, Dh, HW, HW)
        var logits = einsum("bndq,bndk->bnqk", q, k) + einsum("bndq,ndqk->bnqk", q, r); // (B, N, HW, HW)
        var attention = (logits / Math.Sqrt(dh)).masked_fill(mask.logical_not(), double.NegativeInfinity).softmax(-1);
        Tensor mixed = ValueMixtures > 1
            ? einsum("bnmdk,mqk->bndqk", v, MixtureWeights().index_select(1, offsets.flatten()).view(ValueMixtures, hw, hw))               // (B, N, Dh, HW, HW): v_ab as seen from ij
            : v.select(2, 0).unsqueeze(3).expand(b, n, dh, hw, hw);                          // (B, N, Dh, HW, HW)
        var y = einsum("bnqk,bndqk->bndq", attention, mixed);                           // (B, N, Dh, HW)
        return y.reshape(b, OutChannels, h, w);                                          // (B, d_out, H, W)
    }

    /// <summary>r_{a−i,b−j} for every window offset: row part then column part of each head, (N, Dh, K²).</summary>
    private Tensor RelativeEmbeddings()
    {
        int n = Heads, dh = OutChannels / Heads, kSize = KernelSize;
        var rows = relative_rows.unsqueeze(2).expand(n, kSize, kSize, dh / 2);          // (N, K row offset, K column offset, Dh/2)
        var columns = relative_columns.unsqueeze(1).expand(n, kSize, kSize, dh / 2);    // (N, K, K, Dh/2)
        return cat([rows, columns], 3).reshape(n, kSize * kSize, dh).transpose(1, 2);   // (N, Dh, K²)
    }

    /// <summary>p(a,b,m) = softmax_m((emb_row(a) + emb_col(b))ᵀ ν^m) for every window offset, (M, K²).</summary>
    private Tensor MixtureWeights()
    {
        int kSize = KernelSize;
        var position = mixture_rows!.unsqueeze(1) + mixture_columns!.unsqueeze(0);       // (K, K, E)
        var logits = position.reshape(kSize * kSize, -1).matmul(mixture_vectors!.t());  // (K², M)
        return logits.softmax(-1).t();                                                   // (M, K²)
    }

    /// <summary>Grouped 1×1 projection: (B, d_in, H, W) through (N, D, d_in/N) → (B, N, D, H, W).</summary>
    private Tensor Project(Tensor weight, Tensor x)
    {
        long b = x.shape[0], h = x.shape[2], w = x.shape[3];
        var groups = x.view(b, Heads, InChannels / Heads, h, w);                         // (B, N, d_in/N, H, W)
        return einsum("ndc,bnchw->bndhw", weight, groups);                               // (B, N, D, H, W)
    }

    /// <summary>Every pixel's k×k window of <paramref name="t"/>, (B, N, D, H, W) → (B, N, D, H, W, K²), zero outside the image.</summary>
    private Tensor Windows(Tensor t)
    {
        int p = KernelSize / 2;
        long b = t.shape[0], n = t.shape[1], d = t.shape[2], h = t.shape[3], w = t.shape[4];
        var padded = nn.functional.pad(t.reshape(b, n * d, h, w), [p, p, p, p]);        // (B, N·D, H+2p, W+2p)
        var windows = padded.unfold(2, KernelSize, 1).unfold(3, KernelSize, 1);         // (B, N·D, H, W, K, K)
        return windows.reshape(b, n, d, h, w, (long)KernelSize * KernelSize);            // (B, N, D, H, W, K²)
    }

    private static Parameter NewParameter(long[] shape, double std, Device? device, Generator? generator)
    {
        var p = new Parameter(empty(shape, device: device));
        Initializers.Normal(p, std, generator);
        return p;
    }
}
