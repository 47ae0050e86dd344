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
        var c = new Option<double>("--C") { Description = "Regularisation parameter C", DefaultValueFactory = _ => 1.0 }.Positive();
        var loss = new Option<string>("--loss") { Description = "squared_hinge (LinearSVC's default) or hinge", DefaultValueFactory = _ => "squared_hinge" };
        loss.AcceptOnlyFromAmong("squared_hinge", "hinge");
        var tol = new Option<double>("--tol") { Description = "Stopping tolerance on the projected-gradient gap", DefaultValueFactory = _ => 1e-4 }.Positive();
        var maxIter = new Option<int>("--max-iter") { Description = "Iteration limit", DefaultValueFactory = _ => 1000 }.AtLeast(1);
        var seed = new Option<int>("--seed") { Description = "Seed of the coordinate order", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out") { Description = "Model file (.safetensors; its folder is created)", Required = true }.Writable();
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
            SvmModelFile.Write(OptionChecks.CreateParent(parse.GetValue(output)!), model, f.Classes, f.Layer, f.L2, f.WeightsSha256);
            var trainAcc = model.PredictBatch(f.X, f.N).Zip(f.Labels).Count(p => p.First == p.Second) / (double)f.N;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"trained {model.NumClassifiers} classifier(s) on {f.N} x {f.D} in {seconds:F2} s (iterations {model.Iterations.Min()}-{model.Iterations.Max()}); training accuracy {trainAcc:P2}; wrote {parse.GetValue(output)}"));
            return 0;
        });

        var modelOpt = new Option<string>("--model") { Description = "Model written by 'tp7 svm train'", Required = true };
        var features2 = new Option<string>("--features") { Description = "Features .npy (with its .json)", Required = true };
        var json = new Option<bool>("--json") { Description = "Print one JSON document: accuracy, per-class precision/recall/F1/support, macro averages, confusion matrix" };
        var eval = new Command("eval", "Accuracy, per-class precision/recall/F1 and the confusion matrix on labelled features") { modelOpt, features2, json };
        eval.SetHandler(parse =>
        {
            var (stored, f) = Load(parse.GetValue(modelOpt)!, parse.GetValue(features2)!);
            var pred = stored.Model.PredictBatch(f.X, f.N);
            var report = ClassificationReport.Compute(f.Labels, pred, f.Classes.Count);
            if (parse.GetValue(json))
            {
                var k = f.Classes.Count;
                var doc = new
                {
                    accuracy = report.Accuracy,
                    num_samples = report.NumSamples,
                    classes = f.Classes,
                    per_class = f.Classes.Select((name, i) => new
                    {
                        name, precision = report.Precision[i], recall = report.Recall[i], f1 = report.F1[i], support = report.Support[i],
                    }),
                    macro_avg = new { precision = report.MacroPrecision, recall = report.MacroRecall, f1 = report.MacroF1 },
                    confusion_matrix = Enumerable.Range(0, k).Select(t => Enumerable.Range(0, k).Select(p => report.Confusion[t, p]).ToArray()),
                };
                Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(doc, new System.Text.Json.JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
                return 0;
            }
            Console.WriteLine(report.ToText(f.Classes));
            Console.Write(report.ConfusionText(f.Classes));
            return 0;
        });

        var modelOpt2 = new Option<string>("--model") { Description = "Model written by 'tp7 svm train'", Required = true };
        var features3 = new Option<string>("--features") { Description = "Features .npy (with its .json)", Required = true };
        var scores = new Option<bool>("--scores") { Description = "Add one decision-value column per class (score:CLASS; the prediction is the largest)" };
        var predict = new Command("predict", "Print path,true,predicted for each row as CSV (true: the label in the features' .json)") { modelOpt2, features3, scores };
        predict.SetHandler(parse =>
        {
            var (stored, f) = Load(parse.GetValue(modelOpt2)!, parse.GetValue(features3)!);
            var model = stored.Model;
            var values = model.DecisionFunctionBatch(f.X, f.N);
            var pred = model.PredictBatch(f.X, f.N);
            bool withScores = parse.GetValue(scores);
            // A binary model has one classifier (positive: its second class); its score for the first class is the negation.
            int[] scored = model.Classes;
            var header = new List<string> { "path", "true", "predicted" };
            if (withScores) header.AddRange(scored.Select(k => Csv("score:" + stored.ClassNames[k])));
            Console.WriteLine(string.Join(',', header));
            var line = new System.Text.StringBuilder();
            for (int i = 0; i < f.N; i++)
            {
                line.Clear().Append(Csv(f.Paths[i])).Append(',').Append(Csv(f.Classes[f.Labels[i]])).Append(',').Append(Csv(stored.ClassNames[pred[i]]));
                if (withScores)
                    for (int j = 0; j < scored.Length; j++)
                    {
                        double v = model.NumClassifiers == 1 ? (j == 0 ? -values[i] : values[i]) : values[(long)i * model.NumClassifiers + j];
                        line.Append(',').Append(v.ToString("R", CultureInfo.InvariantCulture));
                    }
                Console.WriteLine(line);
            }
            return 0;
        });

        svm.Subcommands.Add(train);
        svm.Subcommands.Add(eval);
        svm.Subcommands.Add(predict);
        return svm;
    }

    /// <summary>A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).</summary>
    static string Csv(string field)
        => field.AsSpan().IndexOfAny(",\"\r\n") < 0 ? field : "\"" + field.Replace("\"", "\"\"") + "\"";

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
