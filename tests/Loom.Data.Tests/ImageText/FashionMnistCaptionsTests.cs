using Loom.Data.ImageText;
using Loom.Data.Sources;
using Loom.Data.Tasks;

namespace Loom.Data.Tests.ImageText;

public class FashionMnistCaptionsTests
{
    private static readonly ExtraIdsVocabulary Vocabulary = new(new ByteVocabulary(), 1);
    private const int Placeholder = 258;

    /// <summary>Ten synthetic 28x28 images, one per class, whose pixels encode their index (no download).</summary>
    private static ImageDataset Synthetic(int perSplit = 10)
    {
        LabeledImage[] Images(int offset) => [.. Enumerable.Range(0, perSplit).Select(i =>
            new LabeledImage([.. Enumerable.Range(0, 784).Select(p => (byte)((p + i + offset) % 256))], i % 10))];
        return new ImageDataset("synthetic", 28, 28, FashionMnist.ClassNames, Images(0), Images(100), Images(200));
    }

    private static DataTask Task() => FashionMnistCaptions.Create(Vocabulary, "synthetic", () => Synthetic());

    [Fact]
    public void Every_image_gives_a_caption_a_question_and_a_chat_turn_with_its_placeholders_and_pixels()
    {
        var examples = Task().GetDataset("test").ToList();
        Assert.Equal(30, examples.Count);
        var caption = examples[3];   // image 1: a trouser
        var question = examples[4];
        var chat = examples[5];
        Assert.Equal("caption", caption.Text("kind"));
        Assert.Equal(Enumerable.Repeat(Placeholder, 16), caption.Tokens["inputs"]);
        Assert.Equal([.. Vocabulary.Encode("A photo of a trouser."), Vocabulary.EosId], caption.Tokens["targets"]);
        Assert.Equal("question", question.Text("kind"));
        Assert.Equal([.. Enumerable.Repeat(Placeholder, 16), .. Vocabulary.Encode(" Question: what is this clothing item? Answer:")], question.Tokens["inputs"]);
        Assert.Equal([.. Vocabulary.Encode(" Trouser"), Vocabulary.EosId], question.Tokens["targets"]);
        Assert.Equal(Synthetic().Test[1].Pixels.Select(p => (int)p), caption.Tokens[ImagePrompts.ImageFeature]);
        Assert.Equal("Trouser", question.Text("class"));
        Assert.Equal("chat", chat.Text("kind"));
        Assert.Equal([.. Vocabulary.Encode("<|user|>\n"), .. Enumerable.Repeat(Placeholder, 16), .. Vocabulary.Encode("What is this clothing item?<|end|>\n<|assistant|>\n")], chat.Tokens["inputs"]);
        Assert.Equal([.. Vocabulary.Encode("Trouser"), Vocabulary.EosId], chat.Tokens["targets"]);
        Assert.Equal("Trouser", FashionMnistCaptions.ClassOfAnswer("Trouser"));
    }

    [Fact]
    public void Captions_and_answers_name_their_class_back()
    {
        foreach (string name in FashionMnist.ClassNames)
        {
            Assert.Equal(name, FashionMnistCaptions.ClassOfCaption(FashionMnistCaptions.Caption(name)));
            Assert.Equal(name, FashionMnistCaptions.ClassOfAnswer(FashionMnistCaptions.Answer(name)));
        }
        Assert.Equal("A photo of an ankle boot.", FashionMnistCaptions.Caption("Ankle boot"));
        Assert.Null(FashionMnistCaptions.ClassOfCaption("A photo of a hat."));
        Assert.Null(FashionMnistCaptions.ClassOfAnswer(" Hat"));
    }

    [Fact]
    public void Image_markers_become_runs_of_placeholders_anywhere_in_the_text()
    {
        var (tokens, images) = ImagePrompts.Encode(Vocabulary, "a<image>b<image>", Placeholder, 3);
        Assert.Equal(2, images);
        Assert.Equal([(int)'a', Placeholder, Placeholder, Placeholder, (int)'b', Placeholder, Placeholder, Placeholder], tokens);
        Assert.Equal(Placeholder, ImagePrompts.PlaceholderId(Vocabulary));
        Assert.Contains("byte+extra_ids=1", Assert.Throws<ArgumentException>(() => ImagePrompts.PlaceholderId(new ByteVocabulary())).Message);
    }

    [Fact]
    public void The_builtin_task_needs_a_vocabulary_with_a_placeholder()
    {
        var e = Assert.ThrowsAny<Exception>(() => TaskRegistry.WithBuiltIns(new ByteVocabulary()).GetTask(FashionMnistCaptions.Name));
        Assert.Contains("byte+extra_ids=1", e.Message);
        Assert.Equal(FashionMnistCaptions.Name, TaskRegistry.WithBuiltIns(Vocabulary).GetTask(FashionMnistCaptions.Name).Name);
    }

    [Fact]
    public void Batches_are_a_pure_function_of_seed_step_and_rank_with_loss_on_the_targets_only()
    {
        var examples = Task().GetDataset("train").ToList();
        var batches = new ImageTextBatches(examples, Vocabulary.PadId, 96, 4, 28, 28, seed: 3);
        using (var a = batches.GetBatch(7))
        using (var b = new ImageTextBatches(examples, Vocabulary.PadId, 96, 4, 28, 28, seed: 3).GetBatch(7))
            foreach (string name in a.Names) Assert.True(a[name].equal(b[name]).all().item<bool>(), name);

        using var batch = batches.GetBatch(2);
        for (int row = 0; row < 4; row++)
        {
            var e = examples[batches.ExampleAt(2, row)];
            int[] prompt = e.Tokens["inputs"], answer = e.Tokens["targets"];
            long[] inputs = batch.Inputs[row].data<long>().ToArray(), targets = batch.Targets[row].data<long>().ToArray();
            float[] weights = batch.LossWeights![row].data<float>().ToArray();
            int[] sequence = [.. prompt, .. answer];
            for (int i = 0; i < sequence.Length - 1; i++)
            {
                Assert.Equal(sequence[i], inputs[i]);
                Assert.Equal(sequence[i + 1], targets[i]);
                Assert.Equal(i + 1 >= prompt.Length ? 1f : 0f, weights[i]);
            }
            Assert.Equal(answer.Length, weights.Sum());
            var pixels = batch[FeatureNames.ImagePixels][row, 0].reshape(-1).data<float>().ToArray();
            Assert.Equal(e.Tokens[ImagePrompts.ImageFeature].Select(p => p / 255f), pixels);
        }
    }

    [Fact]
    public void Two_ranks_split_every_epoch_exactly()
    {
        // 4 images, 12 examples: 3 steps of 2 rows on each of 2 ranks.
        var examples = FashionMnistCaptions.Create(Vocabulary, "synthetic", () => Synthetic(perSplit: 4)).GetDataset("train").ToList();
        var seen = new List<int>();
        for (int rank = 0; rank < 2; rank++)
        {
            var batches = new ImageTextBatches(examples, Vocabulary.PadId, 80, 2, 28, 28, seed: 9, rank, worldSize: 2);
            for (long step = 0; step < 3; step++)
                for (int row = 0; row < 2; row++) seen.Add(batches.ExampleAt(step, row));
        }
        Assert.Equal(Enumerable.Range(0, 12), seen.Order());
    }
}
