using Loom.Bench;

// loom-bench <benchmark> [flags]. Results (markdown) go to stdout, progress to stderr, so
// `loom-bench train-step > result.md` keeps only the report.
if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.WriteLine("usage: loom-bench <benchmark> [flags]\n\nbenchmarks:\n  train-step   one full training step, Loom vs plain TorchSharp (see train-step --help)");
    return args.Length == 0 ? 2 : 0;
}

switch (args[0])
{
    case "train-step":
        if (args.Skip(1).Any(a => a is "-h" or "--help"))
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
    default:
        Console.Error.WriteLine($"loom-bench: unknown benchmark '{args[0]}' (known: train-step)");
        return 2;
}
