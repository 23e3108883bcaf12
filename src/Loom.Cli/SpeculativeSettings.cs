using System.ComponentModel;
using Loom.Inference.Speculative;
using Loom.Models;
using Loom.Training;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary>Options of commands that decode from a checkpoint and may decode speculatively (<c>loom serve</c>, <c>loom generate</c>).</summary>
public class SpeculativeSettings : CheckpointSettings
{
    /// <summary>Speculative proposer.</summary>
    [CommandOption("--speculative <METHOD>")]
    [Description("Decode speculatively: ngram (prompt lookup: propose what followed the last tokens' earlier occurrence) or draft (a smaller model, --draft). Greedy output is unchanged; sampled output keeps its distribution.")]
    public string? Speculative { get; init; }

    /// <summary>Draft model checkpoint.</summary>
    [CommandOption("--draft <CHECKPOINT>")]
    [Description("The draft model for speculative decoding: a run or checkpoint folder of a smaller decoder-only model with the same vocabulary (implies --speculative draft).")]
    public string? Draft { get; init; }

    /// <summary>Tokens drafted per round.</summary>
    [CommandOption("--speculative-tokens <K>")]
    [Description("Tokens proposed per speculative round, 1..32 (default 4): the target scores k + 1 positions in one forward.")]
    public int SpeculativeTokens { get; init; } = 4;

    /// <summary>Whether any speculative option was given.</summary>
    public bool IsSpeculative => Speculative is not null || Draft is not null;

    /// <inheritdoc />
    public override Spectre.Console.ValidationResult Validate()
    {
        string? method = Speculative?.Trim().ToLowerInvariant();
        if (method is not (null or "ngram" or "draft"))
            return Spectre.Console.ValidationResult.Error($"--speculative takes ngram or draft, not '{Speculative}'");
        if (method == "draft" && Draft is null) return Spectre.Console.ValidationResult.Error("--speculative draft needs --draft CHECKPOINT (a smaller model with the same vocabulary)");
        if (method == "ngram" && Draft is not null) return Spectre.Console.ValidationResult.Error("--speculative ngram takes no --draft: drop one of them");
        if (SpeculativeTokens is < 1 or > 32) return Spectre.Console.ValidationResult.Error($"--speculative-tokens {SpeculativeTokens} must be in 1..32");
        return base.Validate();
    }

    /// <summary>The speculative options asked for, loading the draft model on <paramref name="device"/>; null when not speculative. The caller disposes the draft.</summary>
    public SpeculativeOptions? LoadSpeculative(TorchSharp.torch.Device device)
    {
        if (!IsSpeculative) return null;
        LanguageModel? draft = null;
        if (Draft is not null)
        {
            (draft, _) = ModelCheckpoint.Load(TrainingCheckpoint.Resolve(Draft), device);
            GenerativeModels.Require(draft, Draft);
        }
        try
        {
            return new SpeculativeOptions { Draft = draft, DraftTokens = SpeculativeTokens };
        }
        catch
        {
            draft?.Dispose();
            throw;
        }
    }
}
