using System.Globalization;
using Loom.Core;
using Loom.Data;
using Loom.Models;
using Loom.Models.Interop;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>Settings of <c>loom-bench hf-logits</c>.</summary>
/// <param name="Model">The Hugging Face folder (config.json and safetensors) to import.</param>
/// <param name="Tokens">The token ids of the one row scored: a decoder's inputs, or an encoder-decoder's decoder inputs.</param>
/// <param name="EncoderTokens">An encoder-decoder's encoder inputs; null for a decoder.</param>
/// <param name="Device">cpu, cuda or cuda:N.</param>
/// <param name="Output">The safetensors file to write the logits to, as "logits", (1, T, V) float32.</param>
internal sealed record HfLogitsSettings(string Model, IReadOnlyList<long> Tokens, IReadOnlyList<long>? EncoderTokens, string Device, string Output)
{
    public const string Usage = """
        usage: loom-bench hf-logits --model DIR --tokens 1,2,3 [--encoder-tokens 4,5,6] [--device cpu|cuda] --output FILE.safetensors

        Imports a Hugging Face folder with HuggingFaceModels.Import (the path of `loom import hf`), scores one row of
        tokens in evaluation mode and writes the float32 logits, (1, T, V), as the tensor "logits" of FILE: what
        bench/gpu/hf-conformance.sh compares with transformers' logits for the same folder. An encoder-decoder (T5)
        takes --encoder-tokens too, and --tokens are its decoder inputs (from the decoder start id).
        """;

    public static HfLogitsSettings Parse(IReadOnlyList<string> args)
    {
        var s = BenchFlags.Parse(args, new HfLogitsSettings("", [], null, "cpu", ""), (s, f) => f.Name switch
        {
            "--model" => s with { Model = f.Value() },
            "--tokens" => s with { Tokens = Ids(f) },
            "--encoder-tokens" => s with { EncoderTokens = Ids(f) },
            "--device" => s with { Device = f.Value() },
            "--output" => s with { Output = f.Value() },
            _ => throw f.Unknown(),
        });
        if (s.Model.Length == 0) throw new ArgumentException("--model DIR is required");
        if (s.Tokens.Count == 0) throw new ArgumentException("--tokens is required: comma-separated ids");
        if (s.Output.Length == 0) throw new ArgumentException("--output FILE.safetensors is required");
        return s;
    }

    // Token ids may be 0 (T5's decoder start), so BenchFlags' positive-integer lists do not fit.
    private static long[] Ids(BenchFlags f)
    {
        string text = f.Value();
        return [.. text.Split(',', StringSplitOptions.TrimEntries).Select(t => long.TryParse(t, NumberStyles.Integer, CultureInfo.InvariantCulture, out long id) && id >= 0
            ? id
            : throw new ArgumentException($"{f.Name} needs comma-separated ids >= 0, got '{text}'"))];
    }
}

/// <summary>
/// <c>loom-bench hf-logits</c>: the logits Loom computes for a Hugging Face folder (a conformance check against
/// transformers, not a timing; not listed in the usage).
/// </summary>
internal static class HfLogitsBenchmark
{
    public static string Run(HfLogitsSettings s)
    {
        var device = Devices.Resolve(s.Device);
        using var model = HuggingFaceModels.Import(s.Model, device);
        model.eval();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var tokens = tensor(s.Tokens.ToArray(), device: device).unsqueeze(0);              // (1, T)
        var features = new Dictionary<string, Tensor> { [FeatureNames.DecoderInputTokens] = tokens, [FeatureNames.DecoderTargetTokens] = tokens };
        if (s.EncoderTokens is { } encoder) features[FeatureNames.EncoderInputTokens] = tensor(encoder.ToArray(), device: device).unsqueeze(0); // (1, S)
        var logits = model.Forward(new FeatureBatch(features)).Logits.to(float32).cpu().contiguous(); // (1, T, V)
        SafeTensors.Save(s.Output, new Dictionary<string, Tensor> { ["logits"] = logits });
        return string.Create(CultureInfo.InvariantCulture,
            $"| {Path.GetFileName(Path.TrimEndingDirectorySeparator(s.Model))} | {model.Options.Architecture} | {model.ParameterCount:N0} parameters | logits [{string.Join(", ", logits.shape)}] on {Devices.Describe(device)} | {s.Output} |\n");
    }
}
