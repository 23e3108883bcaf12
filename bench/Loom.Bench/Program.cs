using Loom.Bench;

// loom-bench <benchmark> [flags]. Results (markdown) go to stdout, progress to stderr, so
// `loom-bench train-step > result.md` keeps only the report.
if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.WriteLine("""
        usage: loom-bench <benchmark> [flags]

        benchmarks:
          train-step   one full training step, Loom vs plain TorchSharp (see train-step --help)
          pipeline     data pipeline throughput, on the fly and cached, vs training (see pipeline --help)
          serve-load   the HTTP server under concurrent streaming clients, batching vs sequential (see serve-load --help)
          sampler      one step's sampling, all rows at once on the device vs one row at a time (see sampler --help)
          moe          tiny-moe against the dense tiny preset at equal active parameters and steps (see moe --help)
          t5-spam      T5 pre-training and spam_assassin fine-tuning, beside a decoder-only twin (see t5-spam --help)
          scaling      data-parallel training under mpirun at 1 and 2 ranks (see scaling --help)
          decode       batch-1 greedy decoding against llama.cpp on the same weights (see decode --help)
          int8-linear  one linear layer: float32 vs int8 widened vs int8 direct, by rows of input (see int8-linear --help)
          decode-profile  one decode step timed phase by phase, tensors counted (see decode-profile --help)
          matvec-stream  a decode step's matmuls out of cache: libtorch against Loom's float kernel, by rows (see matvec-stream --help)
          reformer-memory  peak memory of a training step vs depth, reversible vs standard stack (see reformer-memory --help)
          reformer-duplication  one-layer Reformer, full vs LSH attention, on the 0w0w duplication task (see reformer-duplication --help)
          long-context peak memory of sdpa, written-out and blockwise attention at 4k-32k tokens (see long-context --help)
          needle       needle-in-a-haystack retrieval by length and depth, with and without RoPE scaling (see needle --help)
          sasa-vs-conv stand-alone self-attention against its convolutional twin on Fashion-MNIST (see sasa-vs-conv --help)
          speculative  plain against speculative decoding (n-gram, draft model) of a trained model (see speculative --help)
          constraint-masks  token-mask time of structured output per vocabulary (see constraint-masks --help)
        """);
    return args.Length == 0 ? 2 : 0;
}

var flags = args.Skip(1).ToList();
return args[0] switch
{
    "train-step" => Bench(TrainStepSettings.Usage, TrainStepSettings.Parse, TrainStepBenchmark.Run),
    "pipeline" => Bench(PipelineSettings.Usage, PipelineSettings.Parse, PipelineBenchmark.Run),
    "serve-load" => Bench(ServeLoadSettings.Usage, ServeLoadSettings.Parse, ServeLoadBenchmark.Run),
    "sampler" => Bench(SamplerSettings.Usage, SamplerSettings.Parse, SamplerBenchmark.Run),
    "moe" => Bench(MoeSettings.Usage, MoeSettings.Parse, MoeBenchmark.Run),
    "t5-spam" => Bench(T5SpamSettings.Usage, T5SpamSettings.Parse, T5SpamBenchmark.Run),
    "scaling" => Bench(ScalingSettings.Usage, ScalingSettings.Parse, ScalingBenchmark.Run),
    "decode" => Bench(DecodeSettings.Usage, DecodeSettings.Parse, DecodeBenchmark.Run),
    "int8-linear" => Bench(Int8LinearSettings.Usage, Int8LinearSettings.Parse, Int8LinearBenchmark.Run),
    "matvec-stream" => Bench(MatVecStreamSettings.Usage, MatVecStreamSettings.Parse, MatVecStreamBenchmark.Run),
    "decode-profile" => Bench(DecodeProfileSettings.Usage, DecodeProfileSettings.Parse, DecodeProfileBenchmark.Run),
    "reformer-memory" => Bench(ReformerMemorySettings.Usage, ReformerMemorySettings.Parse, ReformerMemoryBenchmark.Run),
    "reformer-duplication" => Bench(ReformerDuplicationSettings.Usage, ReformerDuplicationSettings.Parse, ReformerDuplicationBenchmark.Run),
    "long-context" => Bench(LongContextSettings.Usage, LongContextSettings.Parse, LongContextBenchmark.Run),
    "needle" => Bench(NeedleSettings.Usage, NeedleSettings.Parse, NeedleBenchmark.Run),
    "sasa-vs-conv" => Bench(SasaSettings.Usage, SasaSettings.Parse, SasaBenchmark.Run),
    "constraint-masks" => Bench(ConstraintMaskSettings.Usage, ConstraintMaskSettings.Parse, ConstraintMaskBenchmark.Run),
    // Not listed in the usage: a conformance check for bench/gpu/hf-conformance.sh, not a benchmark.
    "speculative" => Bench(SpeculativeSettings.Usage, SpeculativeSettings.Parse, SpeculativeBenchmark.Run),
    "hf-logits" => Bench(HfLogitsSettings.Usage, HfLogitsSettings.Parse, HfLogitsBenchmark.Run),
    _ => Unknown(args[0]),
};

// Prints the usage for --help, a one-line error and the usage for bad flags (exit 2), else the report.
int Bench<TSettings>(string usage, Func<IReadOnlyList<string>, TSettings> parse, Func<TSettings, string> run)
{
    if (flags.Any(a => a is "-h" or "--help"))
    {
        Console.WriteLine(usage);
        return 0;
    }
    TSettings settings;
    try
    {
        settings = parse(flags);
    }
    catch (ArgumentException e)
    {
        Console.Error.WriteLine($"loom-bench {args[0]}: {e.Message}\n\n{usage}");
        return 2;
    }
    try
    {
        Console.Write(run(settings));
        return 0;
    }
    catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException)
    {
        // What the user can fix (a missing tool or build, a failed child run): one line, not a stack trace.
        Console.Error.WriteLine($"loom-bench {args[0]}: {e.Message}");
        return 1;
    }
}

static int Unknown(string name)
{
    Console.Error.WriteLine($"loom-bench: unknown benchmark '{name}' (known: train-step, pipeline, serve-load, sampler, moe, t5-spam, scaling, decode, decode-profile, matvec-stream, int8-linear, reformer-memory, reformer-duplication, long-context, needle, sasa-vs-conv, constraint-masks, speculative)");
    return 2;
}
