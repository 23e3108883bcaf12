using Loom.Core;
using Loom.Data;
using Loom.Data.Caching;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary>The <c>loom</c> command line: demo, train, eval, infer, generate, plan, serve, data, vocab train.</summary>
public static class LoomApp
{
    /// <summary>Runs the command line and returns the process exit code (0 ok, 1 error, 130 interrupted).</summary>
    public static int Run(string[] args)
    {
        var app = new CommandApp();
        app.Configure(config =>
        {
            config.SetApplicationName("loom");
            config.PropagateExceptions();
            config.AddCommand<DemoCommand>("demo")
                .WithDescription("Train the tiny preset on Jane Austen, report the held-out loss, then generate text.")
                .WithExample("demo");
            config.AddCommand<TrainCommand>("train")
                .WithDescription("Train a model from a preset or run config; resume with --resume.")
                .WithExample("train", "--preset", "tiny", "--data", "notes.txt", "--set", "training.steps=500");
            config.AddCommand<EvalCommand>("eval")
                .WithDescription("Score a checkpoint on held-out text: loss, perplexity, bits per byte.")
                .WithExample("eval", "--checkpoint", "runs/demo");
            config.AddCommand<InferCommand>("infer")
                .WithDescription("Predict (greedy) and score every example of a task's split with a checkpoint, one JSON line per example.")
                .WithExample("infer", "--checkpoint", "runs/t5-finetune-spam", "--task", "spam_assassin", "--split", "validation", "--output", "spam.jsonl");
            config.AddBranch("data", data =>
            {
                data.SetDescription("Tasks and mixtures.");
                data.AddCommand<DataListCommand>("list").WithDescription("List the registered tasks and mixtures (fetches nothing).");
                data.AddCommand<DataInspectCommand>("inspect").WithDescription("Show a task's examples and the decoder features they become.")
                    .WithExample("data", "inspect", "kjv", "--split", "validation", "-n", "2");
                data.AddCommand<DataCacheCommand>("cache")
                    .WithDescription("Run a task's pipeline once and store its token features, sharded and memory-mappable; --verify checks an existing cache instead.")
                    .WithExample("data", "cache", "kjv", "--vocabulary", "tiktoken:gpt2", "--shards", "8")
                    .WithExample("data", "cache", "kjv", "--vocabulary", "tiktoken:gpt2", "--verify");
            });
            config.AddBranch("vocab", vocab =>
            {
                vocab.SetDescription("Vocabulary tools.");
                vocab.AddCommand<VocabTrainCommand>("train")
                    .WithDescription("Train a lossless SentencePiece model (byte fallback, digits split, whitespace kept) with Debian's spm_train.")
                    .WithExample("vocab", "train", "--input", "corpus.txt", "--output", "my.model", "--vocab-size", "8000");
            });
            config.AddBranch("import", import =>
            {
                import.SetDescription("Bring other frameworks' checkpoints into Loom.");
                import.AddCommand<ImportHfCommand>("hf")
                    .WithDescription("Import a Hugging Face LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM or T5ForConditionalGeneration (T5 v1.1) folder as a Loom checkpoint.")
                    .WithExample("import", "hf", "models/llama", "--output", "runs/llama");
            });
            config.AddBranch("export", export =>
            {
                export.SetDescription("Write Loom checkpoints in other frameworks' formats.");
                export.AddCommand<ExportHfCommand>("hf")
                    .WithDescription("Export a checkpoint as a Hugging Face folder: LlamaForCausalLM (serial blocks, RMSNorm, SwiGLU, rotary, no biases), MixtralForCausalLM (the same with experts in every layer, top-2) or T5ForConditionalGeneration (T5 v1.1).")
                    .WithExample("export", "hf", "--checkpoint", "runs/notes", "--output", "hf/notes");
                export.AddCommand<ExportGgufCommand>("gguf")
                    .WithDescription("Export a Llama-shaped checkpoint over the byte vocabulary as a GGUF file for llama.cpp, Ollama and LM Studio.")
                    .WithExample("export", "gguf", "--checkpoint", "runs/notes", "--output", "notes.gguf");
                export.AddCommand<ExportMergedCommand>("merged")
                    .WithDescription("Merge a LoRA adapter into its base's weights and write a plain Loom checkpoint.")
                    .WithExample("export", "merged", "--checkpoint", "runs/demo", "--adapter", "runs/kjv-lora", "--output", "runs/kjv-merged");
            });
            config.AddCommand<GenerateCommand>("generate")
                .WithDescription("Generate text from a checkpoint with a KV cache, streaming to the console.")
                .WithExample("generate", "--checkpoint", "runs/demo", "--prompt", "It is a truth", "--temperature", "0.8", "--top-p", "0.95");
            config.AddCommand<PlanCommand>("plan")
                .WithDescription("Rank inference layouts (Pope et al. 2022) for a model on TPUs or GPUs: latency and MFU of prefill and decode, and the end-to-end time.")
                .WithExample("plan", "--model", "palm-540b", "--hardware", "tpu-v4", "--chips", "64", "--weights", "int8", "--plot", "pareto.png");
            config.AddCommand<ServeCommand>("serve")
                .WithDescription("Serve a checkpoint over an OpenAI-compatible HTTP API (completions, chat completions, models, health, Prometheus metrics).")
                .WithExample("serve", "--checkpoint", "runs/demo", "--port", "8000")
                .WithExample("serve", "--checkpoint", "runs/demo", "--host", "0.0.0.0", "--api-key", "sk-local-1", "--quantize", "int8");
        });
        try
        {
            return app.Run(args);
        }
        catch (Exception e) when (IsUserError(e))
        {
            Console.Error.WriteLine($"loom: error: {OneLine(e)}");
            return 1;
        }
    }

    /// <summary>Errors caused by input (config, files, arguments) that are reported as one line, without a stack trace.</summary>
    internal static bool IsUserError(Exception e) => e is ConfigException or InvalidDataException or FileNotFoundException
        or DirectoryNotFoundException or ArgumentException or CorpusUnavailableException or CommandParseException
        or CommandRuntimeException or UnauthorizedAccessException or IOException or KeyNotFoundException
        or DataFormatException or StaleCacheException or Loom.Distributed.CommunicatorUnavailableException
        or Loom.Training.Recovery.TrainingDivergedException;

    internal static string OneLine(Exception e) => e.Message.Split('\n')[0].Trim();
}
