using System.Diagnostics;
using Tp7.Engine.Data;
using Tp7.Engine.Features;
using Tp7.Engine.Model;
using Tp7.Engine.Svm;

namespace Tp7.Engine.Pipeline;

/// <param name="Layer">A tap or value name of the model; null: its default feature layer (VGG16: relu7).</param>
public sealed record RunSettings(string? Layer = null, double C = 1, SvmLoss Loss = SvmLoss.SquaredHinge, bool L2 = true,
    int BatchSize = 32, int Seed = 0);

/// <summary>Wall-clock seconds of each stage of a run.</summary>
public sealed record StageTimes(double ExtractTrain, double ExtractTest, double TrainSvm, double Evaluate)
{
    public double Total => ExtractTrain + ExtractTest + TrainSvm + Evaluate;
}

public sealed record RunResult(
    Dataset Dataset, RunSettings Settings, FeatureSet Train, FeatureSet Test, LinearSvmModel Svm, int[] Predicted,
    ClassificationReport Report, StageTimes Times, string Device, string Weights, bool RandomWeights, string Model = "vgg16", string Preprocessing = "");

/// <summary>
/// The lab end to end: deep features of the train and test images at one layer, a one-vs-rest linear SVM trained on
/// the train features, predictions and scores on the test features.
/// </summary>
public static class TransferLearning
{
    /// <param name="progress">Called with the stage ("train features", "test features") and its progress.</param>
    public static RunResult Run(Dataset dataset, ImageModel model, string weightsSha256, RunSettings settings, FeatureCache? cache,
        bool randomWeights, Action<string, ExtractProgress>? progress = null, CancellationToken cancellation = default)
    {
        if (dataset.Train.Count == 0) throw new ArgumentException($"{dataset.Root}: no training images");
        if (dataset.Test.Count == 0) throw new ArgumentException($"{dataset.Root}: no test images (use train/ and test/ folders or --train-per-class)");
        var extractor = new FeatureExtractor(model, weightsSha256, settings.Layer, settings.L2, settings.BatchSize, cache);
        settings = settings with { Layer = extractor.Layer };

        var clock = Stopwatch.StartNew();
        var train = extractor.Extract(dataset.Train, dataset.Classes, p => progress?.Invoke("train features", p), cancellation);
        double tTrainFeatures = clock.Elapsed.TotalSeconds;
        clock.Restart();
        var test = extractor.Extract(dataset.Test, dataset.Classes, p => progress?.Invoke("test features", p), cancellation);
        double tTestFeatures = clock.Elapsed.TotalSeconds;

        var presentClasses = train.Labels.Distinct().Count();
        if (presentClasses < 2)
            throw new ArgumentException($"{dataset.Root}: the training images that decoded cover {presentClasses} class(es); an SVM needs at least 2");
        clock.Restart();
        var svm = LinearSvm.TrainOneVsRest(train.X, train.N, train.D, train.Labels,
            new SvmOptions(C: settings.C, Loss: settings.Loss, Seed: settings.Seed));
        double tTrain = clock.Elapsed.TotalSeconds;
        clock.Restart();
        var predicted = svm.PredictBatch(test.X, test.N);
        var report = ClassificationReport.Compute(test.Labels, predicted, dataset.Classes.Count);
        double tEval = clock.Elapsed.TotalSeconds;

        return new RunResult(dataset, settings, train, test, svm, predicted, report,
            new StageTimes(tTrainFeatures, tTestFeatures, tTrain, tEval), model.Device.Name, model.WeightsSource, randomWeights, model.Name, model.Preprocessing.Describe());
    }
}
