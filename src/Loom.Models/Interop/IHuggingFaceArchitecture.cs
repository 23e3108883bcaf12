using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Loom.Models.Interop;

/// <summary>
/// One Hugging Face architecture (a transformers model class) as Loom reads and writes it: how its config.json maps
/// to Loom's model options and its tensors to Loom's state dict, in both directions. <see cref="HuggingFaceModels"/>
/// holds the ones Loom knows and picks among them.
/// </summary>
public interface IHuggingFaceArchitecture
{
    /// <summary>The <c>architectures</c> values of config.json this reads; the first is the one it writes.</summary>
    IReadOnlyList<string> Names { get; }

    /// <summary>Why <paramref name="model"/> is not exactly this architecture, naming the first option that differs; null when it is.</summary>
    string? WhyNot(ModelOptions model);

    /// <summary>Loom model options equal to <paramref name="config"/>.</summary>
    /// <exception cref="InvalidDataException">An option is missing or not supported; the message names it.</exception>
    ModelOptions ReadOptions(HuggingFaceConfig config);

    /// <summary>config.json for <paramref name="model"/>, with every field transformers writes for this architecture.</summary>
    JsonObject WriteConfig(ModelOptions model, int? bosTokenId, int? eosTokenId);

    /// <summary>Loom's state dict (<paramref name="state"/>) as this architecture's tensors, by Hugging Face name.</summary>
    IReadOnlyDictionary<string, Tensor> ToHuggingFace(ModelOptions model, IReadOnlyDictionary<string, Tensor> state);

    /// <summary>
    /// This architecture's tensors as Loom's state dict: every tensor taken from <paramref name="tensors"/> with the
    /// shape <paramref name="model"/> implies. Tensors left untaken are reported as unexpected by the caller.
    /// </summary>
    IReadOnlyDictionary<string, Tensor> ToLoom(ModelOptions model, HuggingFaceTensors tensors);
}
