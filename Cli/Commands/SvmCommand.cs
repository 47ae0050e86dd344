using System.CommandLine;
using System.Globalization;
using Tp7.Engine.Features;
using Tp7.Engine.Svm;

namespace Tp7.Cli.Commands;

/// <summary>`tp7 svm train|eval|predict`: our linear SVM (LIBLINEAR's dual coordinate descent) on feature files.</summary>
static class SvmCommand
{
    public static Command Create()
    {
        var svm = new Command("svm", "Linear SVM on extracted features (one-vs-rest, dual coordinate descent)");

        var features = new Option<string>("--features") { Description = "Features .npy written by 'tp7 extract' (labels from its .json)", Required = true };
        var c = new Option<double>("--C") { Description = "Regularisation parameter C", DefaultValueFactory = _ => 1.0 };
        var loss = new Option<string>("--loss") { Description = "squared_hinge (LinearSVC's default) or hinge", DefaultValueFactory = _ => "squared_hinge" };
        loss.AcceptOnlyFromAmong("squared_hinge", "hinge");
        var tol = new Option<double>("--tol") { Description = "Stopping tolerance on the projected-gradient gap", DefaultValueFactory = _ => 1e-4 };
        var maxIter = new Option<int>("--max-iter") { Description = "Iteration limit", DefaultValueFactory = _ => 1000 };
        var seed = new Option<int>("--seed") { Description = "Seed of the coordinate order", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out") { Description = "Model file (.safetensors)", Required = true };
        var train = new Command("train", "Train one-vs-rest linear SVMs") { features, c, loss, tol, maxIter, seed, output };
        train.SetHandler(parse =>
        {
            var f = FeatureFile.Read(parse.GetValue(features)!);
            var options = new SvmOptions(parse.GetValue(c), parse.GetValue(loss) == "hinge" ? SvmLoss.Hinge : SvmLoss.SquaredHinge,
                parse.GetValue(tol), parse.GetValue(maxIter), Seed: parse.GetValue(seed));
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var model = LinearSvm.TrainOneVsRest(f.X, f.N, f.D, f.Labels, options);
            double seconds = clock.Elapsed.TotalSeconds;
            foreach (var w in model.Warnings) Console.Error.WriteLine($"warning: {w}");
            SvmModelFile.Write(parse.GetValue(output)!, model, f.Classes, f.Layer, f.L2, f.WeightsSha256);
            var trainAcc = model.PredictBatch(f.X, f.N).Zip(f.Labels).Count(p => p.First == p.Second) / (double)f.N;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"trained {model.NumClassifiers} classifier(s) on {f.N} x {f.D} in {seconds:F2} s (iterations {model.Iterations.Min()}-{model.Iterations.Max()}); training accuracy {trainAcc:P2}; wrote {parse.GetValue(output)}"));
            return 0;
        });

        var modelOpt = new Option<string>("--model") { Description = "Model written by 'tp7 svm train'", Required = true };
        var features2 = new Option<string>("--features") { Description = "Features .npy (with its .json)", Required = true };
        var eval = new Command("eval", "Accuracy, per-class scores and confusion matrix on labelled features") { modelOpt, features2 };
        eval.SetHandler(parse =>
        {
            var (stored, f) = Load(parse.GetValue(modelOpt)!, parse.GetValue(features2)!);
            var pred = stored.Model.PredictBatch(f.X, f.N);
            var report = ClassificationReport.Compute(f.Labels, pred, f.Classes.Count);
            Console.WriteLine(report.ToText(f.Classes));
            return 0;
        });

        var modelOpt2 = new Option<string>("--model") { Description = "Model written by 'tp7 svm train'", Required = true };
        var features3 = new Option<string>("--features") { Description = "Features .npy (with its .json)", Required = true };
        var predict = new Command("predict", "Print path,predicted for each row as CSV") { modelOpt2, features3 };
        predict.SetHandler(parse =>
        {
            var (stored, f) = Load(parse.GetValue(modelOpt2)!, parse.GetValue(features3)!);
            var pred = stored.Model.PredictBatch(f.X, f.N);
            Console.WriteLine("path,predicted");
            for (int i = 0; i < f.N; i++) Console.WriteLine($"{f.Paths[i]},{stored.ClassNames[pred[i]]}");
            return 0;
        });

        svm.Subcommands.Add(train);
        svm.Subcommands.Add(eval);
        svm.Subcommands.Add(predict);
        return svm;
    }

    static (SvmModelFile.Stored, FeatureSet) Load(string modelPath, string featuresPath)
    {
        var stored = SvmModelFile.Read(modelPath);
        var f = FeatureFile.Read(featuresPath);
        if (f.D != stored.Model.NumFeatures)
            throw new ArgumentException($"{featuresPath}: {f.D} features per row, the model {modelPath} expects {stored.Model.NumFeatures}");
        if (f.Layer != stored.Layer || f.L2 != stored.L2 || f.WeightsSha256 != stored.WeightsSha256)
            Console.Error.WriteLine($"warning: {featuresPath} ({f.Layer}, L2 {f.L2}, weights {f.WeightsSha256[..Math.Min(12, f.WeightsSha256.Length)]}) " +
                                    $"differs from the model's training features ({stored.Layer}, L2 {stored.L2}, weights {stored.WeightsSha256[..Math.Min(12, stored.WeightsSha256.Length)]})");
        if (!f.Classes.SequenceEqual(stored.ClassNames))
            throw new ArgumentException($"{featuresPath}: classes [{string.Join(", ", f.Classes)}] differ from the model's [{string.Join(", ", stored.ClassNames)}]");
        return (stored, f);
    }
}
