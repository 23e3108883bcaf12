using Loom.Models;
using Loom.Training.Optimization;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>
/// Loom's side: <see cref="DecoderLm"/> switched to a plain GPT, Loom's <see cref="AdamW"/> and
/// <see cref="GradientClipping"/>, one step as <c>Trainer</c> takes it (without accumulation or logging).
/// </summary>
internal sealed class LoomContender : ITrainStepContender
{
    private readonly DecoderLm model;
    private readonly AdamW optimizer;
    private readonly List<Parameter> parameters;

    public LoomContender(TrainStepSettings s, Device device)
    {
        Options = GptOptions(s);
        model = new DecoderLm(Options, device);
        model.UsePrecision(ComputePrecisions.Parse(s.Precision, "--precision"));
        model.train();
        parameters = model.parameters().ToList();
        optimizer = new AdamW(model.named_parameters(), new AdamWOptions
        {
            Beta1 = TrainStepSettings.Beta1,
            Beta2 = TrainStepSettings.Beta2,
            Epsilon = TrainStepSettings.Epsilon,
            WeightDecay = TrainStepSettings.WeightDecay,
            DecayOnlyMatrices = true, // nanoGPT's rule too: biases and norm gains are not decayed
        });
    }

    /// <summary>
    /// The GPT-2 / nanoGPT architecture in Loom's switches: serial block, GELU MLP, learned positions,
    /// multi-head attention (num_kv_heads = num_heads), LayerNorm with bias, biases everywhere, shared
    /// embeddings. The position table is exactly --seq long so both contenders hold the same parameters.
    /// </summary>
    public static DecoderLmOptions GptOptions(TrainStepSettings s) => new()
    {
        VocabSize = s.Vocab,
        ModelDim = s.Dim,
        NumLayers = s.Layers,
        NumHeads = s.Heads,
        NumKvHeads = s.Heads,
        HeadDim = s.HeadDim,
        MlpDim = s.MlpDim,
        Activation = MlpActivation.Gelu,
        ParallelBlock = false,
        Positions = PositionEncoding.Learned,
        MaxSequenceLength = s.Seq,
        SharedEmbeddings = true,
        UseBias = true,
        Norm = NormKind.LayerNorm,
        NormEpsilon = TrainStepSettings.NormEpsilon,
    };

    public DecoderLmOptions Options { get; }

    public string Name => "Loom (DecoderLm, Loom AdamW + clipping)";

    public long ParameterCount => model.ParameterCount;

    /// <summary>Loom's parameters by name, for copying into the plain model.</summary>
    public IReadOnlyDictionary<string, Tensor> NamedParameters() =>
        model.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);

    public float EvalLoss(Tensor inputs, Tensor targets)
    {
        using var _ = NewDisposeScope();
        using var noGrad = no_grad();
        return model.Loss(inputs, targets, zLossWeight: 0).CrossEntropy.item<float>();
    }

    public StepTiming Step(Tensor inputs, Tensor targets, PhaseClock clock)
    {
        using var _ = NewDisposeScope();
        clock.Start();
        optimizer.ZeroGrad();
        clock.Lap(Phase.ZeroGrad);
        // z-loss off: the plain contender's objective is plain cross-entropy.
        var loss = model.Loss(inputs, targets, zLossWeight: 0);
        clock.Lap(Phase.Forward);
        loss.Total.backward();
        clock.Lap(Phase.Backward);
        GradientClipping.ClipGlobalNormOfParameters(parameters, TrainStepSettings.ClipNorm);
        clock.Lap(Phase.Clip);
        optimizer.Step(TrainStepSettings.LearningRate);
        clock.Lap(Phase.Optimizer);
        return clock.Stop(loss.CrossEntropy.item<float>());
    }

    public void Dispose()
    {
        optimizer.Dispose();
        model.Dispose();
    }
}
