using Loom.Data;
using Loom.Data.Tasks;

namespace Loom.Training;

/// <summary>The vocabulary, batch sources and held-out data of a run.</summary>
/// <param name="Vocabulary">Tokenizer of the run.</param>
/// <param name="VocabularySpec">The vocabulary spec, with any SentencePiece model path made absolute.</param>
/// <param name="Train">Training batches, a pure function of (seed, step).</param>
/// <param name="Validation">Held-out batches of one token stream (corpora and language-modelling tasks), or null when <see cref="ValidationTasks"/> are scored instead.</param>
/// <param name="ValidationBytesPerToken">UTF-8 bytes per held-out token, to turn nats/token into bits/byte (with <paramref name="Validation"/>).</param>
/// <param name="CorpusName">Short name of the corpus, task or mixture.</param>
/// <param name="Description">One line saying what the data is.</param>
public sealed record TrainingData(IVocabulary Vocabulary, string VocabularySpec, ITrainingBatches Train, LmBatcher? Validation,
    double ValidationBytesPerToken, string CorpusName, string Description)
{
    /// <summary>
    /// Tasks whose validation splits the trainer scores with <see cref="Evaluation.TaskEvaluator"/> (loss,
    /// bits per byte and each task's metrics, per task) when <see cref="Validation"/> is null.
    /// </summary>
    public IReadOnlyList<DataTask> ValidationTasks { get; init; } = [];

    /// <summary>Held-out images (an image task trained with an image model): the trainer reports their loss and accuracy; null otherwise.</summary>
    public Loom.Data.Images.ImageBatcher? ValidationImages { get; init; }

    /// <summary>Held-out batches of an image + text task, scored for loss when <see cref="Validation"/> is null; null otherwise.</summary>
    public Loom.Data.ImageText.ImageTextBatches? ImageTextValidation { get; init; }

    /// <summary>Which model features the batches hold (decoder-only or encoder-decoder rows).</summary>
    public Loom.Data.FeatureConverters.FeatureLayout Layout { get; init; } = Loom.Data.FeatureConverters.FeatureLayout.Decoder;
}
