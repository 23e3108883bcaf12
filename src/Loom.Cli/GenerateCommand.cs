using System.ComponentModel;
using Loom.Core;
using Loom.Data;
using Loom.Inference;
using Loom.Inference.Constraints;
using Loom.Inference.Engine;
using Loom.Inference.Speculative;
using Loom.Models;
using Loom.Training;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary><c>loom generate</c>.</summary>
public sealed class GenerateCommand : Command<GenerateCommand.Settings>
{
    /// <summary>Options of <c>loom generate</c>.</summary>
    public sealed class Settings : SpeculativeSettings
    {

        /// <summary>Prompt text.</summary>
        [CommandOption("--prompt <TEXT>")]
        [Description("Text to continue (default: a newline).")]
        public string Prompt { get; init; } = "\n";

        /// <summary>Most tokens to generate.</summary>
        [CommandOption("-n|--max-tokens <N>")]
        [Description("Most tokens to generate (default 300).")]
        public int MaxTokens { get; init; } = 300;

        /// <summary>Temperature.</summary>
        [CommandOption("-t|--temperature <T>")]
        [Description("Sampling temperature; 0 = greedy (default 0.8).")]
        public double Temperature { get; init; } = 0.8;

        /// <summary>Top-k.</summary>
        [CommandOption("--top-k <K>")]
        [Description("Sample from the k most likely tokens only; 0 = off (default).")]
        public int TopK { get; init; }

        /// <summary>Top-p.</summary>
        [CommandOption("--top-p <P>")]
        [Description("Nucleus sampling threshold, above 0 and at most 1; 1 = off (default 0.95).")]
        public double TopP { get; init; } = 0.95;

        /// <summary>Seed.</summary>
        [CommandOption("--seed <SEED>")]
        [Description("Seed for reproducible sampling.")]
        public long? Seed { get; init; }

        /// <summary>Stop sequences.</summary>
        [CommandOption("--stop <TEXT>")]
        [Description("Stop before this text (repeatable, up to 4).")]
        public string[] Stop { get; init; } = [];

        /// <summary>Presence penalty.</summary>
        [CommandOption("--presence-penalty <P>")]
        [Description("Subtract P from the logit of every token already generated (-2..2, default 0).")]
        public double PresencePenalty { get; init; }

        /// <summary>Frequency penalty.</summary>
        [CommandOption("--frequency-penalty <F>")]
        [Description("Subtract F per earlier occurrence from a token's logit (-2..2, default 0).")]
        public double FrequencyPenalty { get; init; }

        /// <summary>Beam search width.</summary>
        [CommandOption("--beams <K>")]
        [Description("Beam search with K beams instead of sampling (prints the K best continuations; temperature, top-k/p and penalties do not apply).")]
        public int? Beams { get; init; }

        /// <summary>Images for the prompt.</summary>
        [CommandOption("--image <FILE>")]
        [Description("A PNG or JPEG image for an image + text model (repeatable): the i-th <image> in --prompt stands for the i-th image; a prompt without <image> gets the images first.")]
        public string[] Images { get; init; } = [];

        /// <summary>Constrain the output to a JSON object.</summary>
        [CommandOption("--json")]
        [Description("Constrain the output to one JSON object (it ends with EOS where the object closes, steered to close within --max-tokens).")]
        public bool Json { get; init; }

        /// <summary>A JSON schema file the output must fit.</summary>
        [CommandOption("--json-schema <FILE>")]
        [Description("Constrain the output to the JSON values the schema in FILE accepts (type, properties, required, items, enum, const, anyOf, $ref, …; an unsupported keyword is refused by name).")]
        public string? JsonSchema { get; init; }

        /// <summary>Ignore EOS.</summary>
        [CommandOption("--ignore-eos")]
        [Description("Keep generating past the end-of-document token.")]
        public bool IgnoreEos { get; init; }
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var sampling = new SamplingOptions
        {
            MaxTokens = settings.MaxTokens, Temperature = settings.Temperature, TopK = settings.TopK,
            TopP = settings.TopP, Seed = settings.Seed, StopAtEos = !settings.IgnoreEos,
            Stop = settings.Stop, PresencePenalty = settings.PresencePenalty, FrequencyPenalty = settings.FrequencyPenalty,
        };
        var grammar = OutputGrammar(settings);
        if (grammar is not null && (settings.Beams is not null || settings.IsSpeculative))
            throw new ArgumentException("--json and --json-schema do not combine with --beams, --speculative or --draft yet: leave those out");
        string checkpoint = TrainingCheckpoint.Resolve(settings.Checkpoint);
        var device = Devices.Resolve(settings.Device ?? "auto");
        var (model, manifest) = settings.LoadModel(checkpoint, device);
        GenerativeModels.Require(model, checkpoint);
        using (model)
        {
            var vocabulary = CheckpointVocabulary.Load(checkpoint, manifest);
            if (settings.Images.Length > 0)
            {
                if (settings.Beams is not null) throw new ArgumentException("--beams does not take --image yet: sample or decode greedily (--temperature 0)");
                var spec = model.ImageInput ?? throw new ArgumentException($"the checkpoint's {model.Options.Architecture} model reads text only: --image needs an image + text model (vision_language)");
                var images = settings.Images.Select(f => GreyscaleImages.Decode(File.ReadAllBytes(f), spec.ImageSize)).ToList();
                string prompt = settings.Prompt.Contains(Loom.Data.ImageText.ImagePrompts.Marker, StringComparison.Ordinal)
                    ? settings.Prompt
                    : string.Concat(Enumerable.Repeat(Loom.Data.ImageText.ImagePrompts.Marker, images.Count)) + settings.Prompt;
                Generate(model, vocabulary, prompt, sampling, Console.Out, cancellationToken, images, grammar);
            }
            else if (settings.Beams is int beams)
                PrintBeams(model, vocabulary, settings.Prompt, new BeamSearchOptions { Beams = beams, MaxTokens = settings.MaxTokens });
            else if (settings.LoadSpeculative(device) is { } speculative)
            {
                using var draft = speculative.Draft;
                GenerateSpeculatively(model, vocabulary, settings.Prompt, sampling, speculative, Console.Out, cancellationToken);
            }
            else
                Generate(model, vocabulary, settings.Prompt, sampling, Console.Out, cancellationToken, grammar: grammar);
        }
        return 0;
    }

    /// <summary>The grammar --json or --json-schema asks for, or null.</summary>
    private static Grammar? OutputGrammar(Settings settings)
    {
        if (settings.Json && settings.JsonSchema is not null) throw new ArgumentException("--json and --json-schema exclude each other: give one");
        if ((settings.Json || settings.JsonSchema is not null) && settings.Beams is not null)
            throw new ArgumentException("--beams does not take --json or --json-schema: sample or decode greedily (--temperature 0)");
        if (settings.IgnoreEos && (settings.Json || settings.JsonSchema is not null))
            throw new ArgumentException("--ignore-eos does not go with --json or --json-schema: the constraint ends the output with EOS");
        if (settings.Json) return Grammar.JsonObject();
        if (settings.JsonSchema is not { } file) return null;
        if (!File.Exists(file)) throw new ArgumentException($"--json-schema: '{Path.GetFullPath(file)}' does not exist");
        try
        {
            using var schema = System.Text.Json.JsonDocument.Parse(File.ReadAllText(file));
            return Grammar.JsonSchema(schema.RootElement);
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new ArgumentException($"--json-schema {file} is not JSON: {e.Message.Split('\n')[0]}");
        }
        catch (SchemaException e)
        {
            throw new ArgumentException($"--json-schema {file}: {e.Message}");
        }
    }

    /// <summary>A request whose prompt's <c>&lt;image&gt;</c> markers become the model's placeholder ids, one run per image.</summary>
    private static GenerationRequest ImageRequest(LanguageModel model, IVocabulary vocabulary, string prompt, SamplingOptions sampling, IReadOnlyList<float[]> images)
    {
        var spec = model.ImageInput!;
        var (tokens, markers) = Loom.Data.ImageText.ImagePrompts.Encode(vocabulary, prompt, spec.PlaceholderId, spec.TokensPerImage);
        if (markers != images.Count)
            throw new ArgumentException($"--prompt has {markers} {Loom.Data.ImageText.ImagePrompts.Marker} markers but {images.Count} --image files were given: one marker per image");
        return new GenerationRequest(tokens, sampling) { Images = images };
    }

    /// <summary>Prints the best beam-search continuations, best first, with their log-probabilities.</summary>
    private static void PrintBeams(LanguageModel model, IVocabulary vocabulary, string prompt, BeamSearchOptions options)
    {
        var hypotheses = new BeamSearch(model, vocabulary.EosId, vocabulary.PadId).Search(vocabulary.Encode(prompt), options);
        string context = model.IsEncoderDecoder ? "" : prompt; // an encoder-decoder answers the prompt rather than continuing it
        foreach (var (h, rank) in hypotheses.Select((h, i) => (h, i + 1)))
            Console.WriteLine(FormattableString.Invariant(
                $"#{rank} (log p {h.LogProb:F3}, {h.Tokens.Count} tokens, {(h.FinishReason == FinishReason.Stop ? "eos" : "length")}): {context}{vocabulary.Decode([.. h.Tokens])}"));
    }

    /// <summary>
    /// Streams a continuation through the sequential engine decoding speculatively, then reports to standard error how
    /// many draft tokens the target accepted.
    /// </summary>
    internal static string GenerateSpeculatively(LanguageModel model, IVocabulary vocabulary, string prompt, SamplingOptions sampling, SpeculativeOptions speculative,
        TextWriter output, CancellationToken cancellationToken)
    {
        if (model.IsEncoderDecoder) throw new ArgumentException($"speculative decoding takes decoder-only models; the checkpoint holds a {model.Options.Architecture} model: drop --speculative/--draft");
        using var engine = new SequentialEngine(model, vocabulary, "loom", speculative: speculative);
        var text = Stream(engine, new GenerationRequest(vocabulary.Encode(prompt), sampling), prompt, output, cancellationToken);
        var stats = engine.Stats;
        Console.Error.WriteLine(FormattableString.Invariant(
            $"loom: speculative ({speculative.Describe()}): {stats.SpeculativeAcceptedTokens} of {stats.SpeculativeProposedTokens} draft tokens accepted ({(stats.SpeculativeProposedTokens == 0 ? 0 : (double)stats.SpeculativeAcceptedTokens / stats.SpeculativeProposedTokens):P0})"));
        return text;
    }

    /// <summary>
    /// Streams a continuation of <paramref name="prompt"/> to <paramref name="output"/> through the
    /// inference engine (the same path <c>loom serve</c> uses, with a batch of one), and returns it.
    /// </summary>
    internal static string Generate(LanguageModel model, IVocabulary vocabulary, string prompt, SamplingOptions sampling, TextWriter output, CancellationToken cancellationToken,
        IReadOnlyList<float[]>? images = null, Grammar? grammar = null)
    {
        using var engine = new ContinuousBatchingEngine(model, vocabulary, "loom", new EngineOptions { MaxRunning = 1 });
        var request = images is { Count: > 0 } ? ImageRequest(model, vocabulary, prompt, sampling, images) : new GenerationRequest(vocabulary.Encode(prompt), sampling);
        if (grammar is not null)
        {
            // The constraint steers the output to end within the tokens the engine will generate.
            int budget = Math.Max(1, Math.Min(sampling.MaxTokens, model.IsEncoderDecoder ? engine.ContextLength - 1 : engine.ContextLength - request.Prompt.Count));
            var factory = new TokenConstraintFactory(vocabulary);
            request = request with { Constraint = () => factory.Create(grammar, budget) };
        }
        return Stream(engine, request, prompt, output, cancellationToken);
    }

    private static string Stream(IGenerationEngine engine, GenerationRequest request, string prompt, TextWriter output, CancellationToken cancellationToken)
    {
        bool encoderDecoder = engine.IsEncoderDecoder;
        var text = new System.Text.StringBuilder();
        if (!encoderDecoder) output.Write(prompt); // a continuation follows its prompt; an encoder-decoder's output stands alone
        try
        {
            foreach (var update in engine.GenerateAsync(request, cancellationToken).ToBlockingEnumerable(CancellationToken.None))
            {
                output.Write(update.Text);
                output.Flush();
                text.Append(update.Text);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Ctrl-C: keep what was generated.
        }
        output.WriteLine();
        return text.ToString();
    }
}
