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
          moe          tiny-moe against the dense tiny preset at equal active parameters and steps (see moe --help)
        """);
    return args.Length == 0 ? 2 : 0;
}

bool help = args.Skip(1).Any(a => a is "-h" or "--help");
switch (args[0])
{
    case "train-step":
        if (help)
        {
            Console.WriteLine(TrainStepSettings.Usage);
            return 0;
        }
        TrainStepSettings settings;
        try
        {
            settings = TrainStepSettings.Parse(args.Skip(1).ToList());
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"loom-bench train-step: {e.Message}\n\n{TrainStepSettings.Usage}");
            return 2;
        }
        Console.Write(TrainStepBenchmark.Run(settings));
        return 0;
    case "pipeline":
        if (help)
        {
            Console.WriteLine(PipelineSettings.Usage);
            return 0;
        }
        PipelineSettings pipeline;
        try
        {
            pipeline = PipelineSettings.Parse(args.Skip(1).ToList());
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"loom-bench pipeline: {e.Message}\n\n{PipelineSettings.Usage}");
            return 2;
        }
        Console.Write(PipelineBenchmark.Run(pipeline));
        return 0;
    case "serve-load":
        if (help)
        {
            Console.WriteLine(ServeLoadSettings.Usage);
            return 0;
        }
        ServeLoadSettings serveLoad;
        try
        {
            serveLoad = ServeLoadSettings.Parse(args.Skip(1).ToList());
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"loom-bench serve-load: {e.Message}\n\n{ServeLoadSettings.Usage}");
            return 2;
        }
        Console.Write(ServeLoadBenchmark.Run(serveLoad));
        return 0;
    case "moe":
        if (help)
        {
            Console.WriteLine(MoeSettings.Usage);
            return 0;
        }
        MoeSettings moe;
        try
        {
            moe = MoeSettings.Parse(args.Skip(1).ToList());
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"loom-bench moe: {e.Message}\n\n{MoeSettings.Usage}");
            return 2;
        }
        Console.Write(MoeBenchmark.Run(moe));
        return 0;
    default:
        Console.Error.WriteLine($"loom-bench: unknown benchmark '{args[0]}' (known: train-step, pipeline, serve-load, moe)");
        return 2;
}
