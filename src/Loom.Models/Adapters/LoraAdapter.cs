using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models.Adapters;

/// <summary>
/// The low-rank update of one dense kernel: <c>scale · B(A(dropout(x)))</c> with A (rank × in) drawn as PEFT draws it
/// (Kaiming-uniform with a = √5, that is U(−1/√in, 1/√in)) and B (out × rank) zero, so a fresh adapter changes nothing.
/// </summary>
public sealed class LoraAdapter : nn.Module
{
    // Field names follow PEFT's tensor names (lora_A, lora_B).
    private readonly Parameter lora_A; // (r, in)
    private readonly Parameter lora_B; // (out, r)

    /// <summary>Creates the adapter of an (out, in) kernel on <paramref name="device"/>; A is drawn from <paramref name="generator"/> (torch's default when null).</summary>
    public LoraAdapter(long inFeatures, long outFeatures, int rank, double scale, double dropout, Device? device = null, Generator? generator = null) : base(nameof(LoraAdapter))
    {
        if (rank <= 0) throw new ArgumentOutOfRangeException(nameof(rank), rank, "the rank of a LoRA adapter must be positive");
        Rank = rank;
        Scale = scale;
        Dropout = dropout;
        double bound = 1 / Math.Sqrt(inFeatures);
        using (no_grad())
        {
            // Drawn on the CPU, where the generator lives, so a seed gives the same adapter on every device.
            var a = rand(new long[] { rank, inFeatures }, float32, generator: generator).mul_(2 * bound).sub_(bound);
            lora_A = new Parameter(device is null || device.type == DeviceType.CPU ? a : a.to(device));
        }
        lora_B = new Parameter(zeros(outFeatures, rank, device: device));
        RegisterComponents();
    }

    /// <summary>The rank r.</summary>
    public int Rank { get; }

    /// <summary>alpha / r, the factor of B A.</summary>
    public double Scale { get; }

    /// <summary>Dropout on the input while training.</summary>
    public double Dropout { get; }

    /// <summary>A, (r, in).</summary>
    public Parameter A => lora_A;

    /// <summary>B, (out, r).</summary>
    public Parameter B => lora_B;

    /// <summary>The update of the kernel's output for input <paramref name="x"/> (..., in) -> (..., out), in x's dtype; dropout only when <paramref name="training"/>.</summary>
    public Tensor Delta(Tensor x, bool training)
    {
        var input = training && Dropout > 0 ? nn.functional.dropout(x, Dropout, training: true) : x;
        var a = lora_A.dtype == x.dtype ? lora_A : lora_A.to(x.dtype); // mixed precision: cast at use, as the kernel is
        var b = lora_B.dtype == x.dtype ? lora_B : lora_B.to(x.dtype);
        return nn.functional.linear(nn.functional.linear(input, a), b).mul(Scale);
    }

    /// <summary>The whole update of the kernel, scale · B A, (out, in).</summary>
    public Tensor DeltaWeight() => lora_B.matmul(lora_A).mul(Scale);
}
