using System.Buffers.Binary;
using System.Text;
using Loom.Training.Metrics;

namespace Loom.Training.Tests.Metrics;

public sealed class TensorBoardMetricSinkTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string SingleEventsFile()
    {
        string[] files = Directory.GetFiles(_dir.Path, "events.out.tfevents.*");
        return Assert.Single(files);
    }

    [Fact]
    public void Writes_an_events_file_with_the_expected_tags()
    {
        using (var sink = new TensorBoardMetricSink(_dir.Path))
        {
            sink.Write(new MetricEvent(10, MetricEvent.TrainSplit, 3.25)
            {
                LearningRate = 1e-3, GradNorm = 0.5, TokensPerSecond = 2048, Mfu = 0.25,
            });
            sink.Write(new MetricEvent(10, MetricEvent.ValidationSplit, 3.5) { Perplexity = 33.0, BitsPerByte = 1.25 });
            sink.Flush();
        }

        byte[] bytes = File.ReadAllBytes(SingleEventsFile());
        string[] expected =
        [
            "train/loss", "validation/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "train/mfu",
            "validation/perplexity", "validation/bits_per_byte",
        ];
        foreach (string tag in expected)
            Assert.True(bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(tag)) >= 0, $"tag {tag} is missing from the events file");
    }

    [Fact]
    public void Events_file_is_valid_TFRecord_framing_with_one_record_per_scalar()
    {
        using (var sink = new TensorBoardMetricSink(_dir.Path))
        {
            sink.Write(new MetricEvent(1, MetricEvent.TrainSplit, 3.25) { LearningRate = 1e-3, GradNorm = 0.5 }); // 3 scalars
            sink.Write(new MetricEvent(2, MetricEvent.TrainSplit, 3.0)); // 1 scalar
            sink.Write(new MetricEvent(2, MetricEvent.ValidationSplit, 3.5) { Perplexity = 33.0 }); // 2 scalars
        }

        List<byte[]> records = ReadTfRecords(File.ReadAllBytes(SingleEventsFile()));

        // The file-version header event, then one event per scalar.
        Assert.Equal(1 + 6, records.Count);
        Assert.True(records[0].AsSpan().IndexOf("brain.Event:2"u8) >= 0);
    }

    [Fact]
    public void Records_decode_to_the_written_tags_steps_and_values()
    {
        using (var sink = new TensorBoardMetricSink(_dir.Path))
        {
            sink.Write(new MetricEvent(5, MetricEvent.TrainSplit, 3.25) { Mfu = 0.5 });
            sink.Write(new MetricEvent(7, MetricEvent.ValidationSplit, 2.75) { BitsPerByte = 1.125 });
        }

        var decoded = ReadTfRecords(File.ReadAllBytes(SingleEventsFile()))
            .Skip(1)
            .Select(Tensorboard.Event.Parser.ParseFrom)
            .Select(e => (e.Step, Assert.Single(e.Summary.Value)))
            .Select(p => (p.Step, p.Item2.Tag, p.Item2.SimpleValue))
            .ToArray();

        Assert.Equal(
            [(5L, "train/loss", 3.25f), (5L, "train/mfu", 0.5f), (7L, "validation/loss", 2.75f), (7L, "validation/bits_per_byte", 1.125f)],
            decoded);
    }

    [Fact]
    public void Rejects_steps_beyond_32_bits()
    {
        using var sink = new TensorBoardMetricSink(_dir.Path);
        Assert.Throws<ArgumentOutOfRangeException>(() => sink.Write(new MetricEvent((long)int.MaxValue + 1, MetricEvent.TrainSplit, 1)));
    }

    [Fact]
    public void Write_after_Dispose_throws()
    {
        var sink = new TensorBoardMetricSink(_dir.Path);
        sink.Dispose();
        Assert.Throws<ObjectDisposedException>(() => sink.Write(new MetricEvent(1, MetricEvent.TrainSplit, 1)));
    }

    [Fact]
    public void Crc32c_helper_matches_the_standard_check_value()
    {
        // The CRC-32C check value from the catalogue of parametrised CRC algorithms.
        Assert.Equal(0xE3069283u, Crc32C("123456789"u8));
    }

    /// <summary>
    /// Splits a TFRecord file (uint64 length, uint32 masked CRC-32C of the length, data, uint32 masked
    /// CRC-32C of the data; little-endian) into its records, checking both CRCs and that nothing is left over.
    /// </summary>
    private static List<byte[]> ReadTfRecords(byte[] file)
    {
        var records = new List<byte[]>();
        int at = 0;
        while (at < file.Length)
        {
            Assert.True(file.Length - at >= 12, $"truncated record header at offset {at}");
            ReadOnlySpan<byte> lengthBytes = file.AsSpan(at, 8);
            ulong length = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
            uint lengthCrc = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(at + 8, 4));
            Assert.Equal(MaskedCrc(lengthBytes), lengthCrc);
            at += 12;

            Assert.True((ulong)(file.Length - at) >= length + 4, $"truncated record body at offset {at}");
            byte[] data = file.AsSpan(at, (int)length).ToArray();
            at += (int)length;
            uint dataCrc = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(at, 4));
            Assert.Equal(MaskedCrc(data), dataCrc);
            at += 4;
            records.Add(data);
        }
        return records;
    }

    private static uint MaskedCrc(ReadOnlySpan<byte> data)
    {
        uint crc = Crc32C(data);
        return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
    }

    private static uint Crc32C(ReadOnlySpan<byte> data)
    {
        // Bitwise CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): slow but obviously right.
        uint crc = 0xFFFFFFFFu;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++)
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
        }
        return ~crc;
    }
}
