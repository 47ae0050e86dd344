using Tp7.Engine.Data;
using Tp7.Engine.Devices;
using Tp7.Engine.Features;
using Tp7.Engine.Imaging;
using Tp7.Engine.Model;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// One pass over the images gives every requested layer: the same bits as one extraction per layer (whose plans fuse
/// differently: relu7 alone folds into fc7's epilogue, fc7 and relu7 together do not), each layer cached under its
/// own key, so a second pass (or a single-layer run of any of them) reads the cache and decodes nothing.
/// </summary>
public sealed class MultiLayerExtractionTests(ITestOutputHelper log)
{
    static readonly string[] Layers = ["pool5", "fc6", "relu6", "fc7", "relu7", "fc8"];

    [Fact]
    public void OnePassEqualsSingleLayerExtractionsBitForBitAndASecondPassReadsOnlyTheCache()
    {
        using var tmp = new ScratchDir("tp7-multilayer");
        var classes = DemoData.CopyClassFolders(tmp["data"], 2, 3);
        // An undecodable image: every layer's set must leave it out alike.
        File.WriteAllText(Path.Combine(tmp["data"], classes[1], "broken.png"), "not a png");
        var items = classes.SelectMany((c, k) => Directory.GetFiles(Path.Combine(tmp["data"], c)).Order(StringComparer.Ordinal)
            .Select(f => new DatasetItem(f, k))).ToList();
        using var device = new HostDevice();
        using var model = new ImageModel(device, Vgg16Weights.RandomInit(0), Preprocessing.ImageNet with { Size = 32 });
        const string identity = "multilayer-test";
        var cache = new FeatureCache(tmp["cache"]);

        var onePass = new FeatureExtractor(model, identity, Layers, batchSize: 4, cache: cache).ExtractLayers(items, classes);
        Assert.Equal(Layers.Order(StringComparer.Ordinal), onePass.Keys.Order(StringComparer.Ordinal));
        foreach (var layer in Layers)
        {
            var f = onePass[layer];
            var single = new FeatureExtractor(model, identity, layer, batchSize: 4).Extract(items, classes);
            log.WriteLine($"{layer}: {f.N} x {f.D}, {f.Stats.Computed} computed, {f.Stats.Cached} cached");
            Assert.Equal(6, f.N);
            Assert.Equal(single.D, f.D);
            Assert.Equal(single.Paths, f.Paths);
            Assert.Equal(single.Labels, f.Labels);
            Assert.Equal(layer, f.Layer);
            Assert.Equal(["broken.png"], f.Skipped.Select(s => Path.GetFileName(s.Path)));
            Assert.Equal((0, 6), (f.Stats.Cached, f.Stats.Computed));
            AssertSameBits(single.X, f.X, layer);
        }
        Assert.NotEqual(onePass["fc7"].X, onePass["relu7"].X); // fc7 has negative values; relu7 clips them

        // Second pass over the images that decoded, a fresh extractor on the same cache: every row from the cache,
        // nothing decoded (no decode worker started) or run.
        var decoded = items.Where(i => Path.GetFileName(i.Path) != "broken.png").ToList();
        var again = new FeatureExtractor(model, identity, Layers, batchSize: 4, cache: cache).ExtractLayers(decoded, classes);
        foreach (var layer in Layers)
        {
            var s = again[layer].Stats;
            Assert.Equal((6, 0), (s.Cached, s.Computed));
            Assert.Equal(0, s.ComputeSeconds);
            Assert.Equal(0, s.DecodeWorkers);
            AssertSameBits(onePass[layer].X, again[layer].X, layer + " (cache)");
        }

        // `run` of one of those layers reads the rows the sweep cached.
        var run = new FeatureExtractor(model, identity, "fc6", batchSize: 4, cache: cache).Extract(items, classes);
        Assert.Equal((6, 0), (run.Stats.Cached, run.Stats.Computed));
        AssertSameBits(onePass["fc6"].X, run.X, "fc6 (single layer from the cache)");

        // A layer not cached yet: the pass runs every image, keeps fc7's cached rows and caches conv5_3.
        var mixed = new FeatureExtractor(model, identity, ["fc7", "conv5_3"], batchSize: 4, cache: cache).ExtractLayers(items, classes);
        Assert.Equal((6, 0), (mixed["fc7"].Stats.Cached, mixed["fc7"].Stats.Computed));
        Assert.Equal((0, 6), (mixed["conv5_3"].Stats.Cached, mixed["conv5_3"].Stats.Computed));
        AssertSameBits(onePass["fc7"].X, mixed["fc7"].X, "fc7 (mixed)");
        var conv = new FeatureExtractor(model, identity, "conv5_3", batchSize: 4).Extract(items, classes);
        AssertSameBits(conv.X, mixed["conv5_3"].X, "conv5_3");
        var cachedConv = new FeatureExtractor(model, identity, "conv5_3", cache: cache).Extract(items, classes).Stats;
        Assert.Equal((6, 0), (cachedConv.Cached, cachedConv.Computed));
    }

    static void AssertSameBits(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: element {i}: {expected[i]:R} expected, {actual[i]:R} from the one-pass extraction");
    }
}
