using System.Globalization;
using Tp7.Engine.Data;
using Tp7.Engine.Features;
using Tp7.Engine.Imaging;
using Tp7.Engine.IO;
using Tp7.Engine.Model;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// `tp7 run --model resnet18` on data/demo (the built CLI, our engine end to end) against ONNX Runtime's features of
/// the same preprocessed tensors + scikit-learn's LinearSVC: at least 99 % identical test predictions, matched by path.
/// </summary>
public sealed class ResNet18DemoParityTests(ITestOutputHelper log)
{
    [Fact]
    public void RunWithResNet18MatchesOnnxRuntimeAndScikitLearnOnTheDemoSet()
    {
        using var tmp = new ScratchDir("tp7-resnet18-demo");
        var run = CliRunner.RunOk(tmp.Path, ["run", "--model", "resnet18", "--data", DemoData.Root, "--device", "cpu", "--no-cache", "--out", tmp["run"]],
            timeout: TimeSpan.FromMinutes(10));
        log.WriteLine(run.Stdout);
        Assert.Contains("resnet18 layer pool5", run.Stdout);

        // The reference: the same split and the same tensors, features from ONNX Runtime on the package's two files.
        var ds = DatasetLoader.Open(DemoData.Root, null, 0);
        var (netPath, prePath) = ModelCatalog.FindResNet18();
        var p = ModelCatalog.ResNet18Preprocessing;
        using var pre = new OrtReference(prePath);
        using var net = new OrtReference(netPath);
        string output = Tp7.Engine.Onnx.OnnxModel.Load(netPath).Outputs[0].Name;
        float[] Features(IReadOnlyList<DatasetItem> items)
        {
            var x = new float[items.Count * p.TensorLength];
            Parallel.For(0, items.Count, i => ImageLoader.LoadTensor(items[i].Path, p, x.AsSpan(i * p.TensorLength, p.TensorLength)));
            var f = net.Run(pre.Run(x, items.Count, ["PreprocessedInput"])["PreprocessedInput"], items.Count, [output])[output];
            for (int i = 0; i < items.Count; i++) FeatureExtractor.Normalize(f.AsSpan(i * 512, 512));
            return f;
        }
        Npy.Write(tmp["xtrain.npy"], Features(ds.Train), ds.Train.Count, 512);
        Npy.Write(tmp["xtest.npy"], Features(ds.Test), ds.Test.Count, 512);
        Npy.Write(tmp["ytrain.npy"], ds.Train.Select(i => (long)i.Label).ToArray(), ds.Train.Count);
        Python.Run("svm_reference.py", tmp["xtrain.npy"], tmp["ytrain.npy"], tmp["svm"], "--x-test", tmp["xtest.npy"], "--C", "1");
        var theirs = Npy.ReadInt64(Path.Combine(tmp["svm"], "pred_test.npy")).Data;

        var ours = File.ReadAllLines(Path.Combine(tmp["run"], "predictions.csv")).Skip(1)
            .Select(l => l.Split(',')).ToDictionary(c => Path.GetFullPath(c[0]), c => c[2]);
        int same = 0, correctOurs = 0, correctTheirs = 0;
        for (int i = 0; i < ds.Test.Count; i++)
        {
            string predicted = ours[Path.GetFullPath(ds.Test[i].Path)];
            string reference = ds.Classes[(int)theirs[i]];
            if (predicted == reference) same++;
            if (predicted == ds.Classes[ds.Test[i].Label]) correctOurs++;
            if (reference == ds.Classes[ds.Test[i].Label]) correctTheirs++;
        }
        double agree = (double)same / ds.Test.Count;
        log.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"identical predictions {same}/{ds.Test.Count} ({agree:P1}); accuracy tp7 {(double)correctOurs / ds.Test.Count:P1}, ORT + scikit-learn {(double)correctTheirs / ds.Test.Count:P1}"));
        Assert.True(agree >= 0.99, $"{agree:P1} identical predictions");
    }
}
