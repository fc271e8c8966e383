package org.xlnetedge.app

import org.xlnetedge.tokenizer.Encoded
import org.xlnetedge.tokenizer.MiniJson
import java.io.File
import java.io.InputStream
import java.security.MessageDigest

// The bundle an export writes, as the app reads it. Pure Kotlin (no Android imports) so that it compiles and runs
// on a plain JVM: tests/test_sample_apps.py checks modelInputs() against the host's inputs that way.

/** One model input as the manifest declares it, e.g. input_ids int32 [1, 128]. */
class InputSpec(val name: String, val dtype: String, val shape: IntArray) {
    val shapeLong: LongArray get() = LongArray(shape.size) { shape[it].toLong() }
    override fun toString() = "$name $dtype ${shape.joinToString(", ", "[", "]")}"
}

/**
 * One method of a model (a .pte method, a .tflite signature): the model has one per length bucket, each taking
 * inputs of shape [1, sequenceLength]. [name] is e.g. "forward_16"; null for a record without "methods", whose model
 * has one method (the app then uses the model's only signature / ExecuTorch's "forward").
 */
class MethodSpec(val name: String?, val sequenceLength: Int, val inputs: List<InputSpec>)

/** The one unnamed method of a model whose record has no "methods": it takes [inputs]. */
fun singleMethod(inputs: List<InputSpec>): List<MethodSpec> =
    if (inputs.isEmpty()) emptyList() else listOf(MethodSpec(null, inputs[0].shape.last(), inputs))

/** The fields of a manifest artifact record the app uses. */
class ArtifactSpec(
    val name: String,       // e.g. "tflite-full-int8"
    val file: String,       // path inside the bundle, e.g. "models/tflite-full-int8.tflite"
    val format: String,     // "tflite" | "pte"
    val delegate: String,   // "nnapi" | "xnnpack" | "cpu": what the export was made and checked for
    val valid: Boolean,     // false: the export's checks failed; not picked by default, refused by verifyModelFile
    val inputs: List<InputSpec>,  // the longest method's
    val sha256: String? = null,   // hex SHA-256 of the file; checked before the model is loaded
    // The manifest's "methods", shortest first; without them one unnamed method taking [inputs].
    val methods: List<MethodSpec> = singleMethod(inputs)
) {
    /** The length buckets of the model, ascending. */
    val sequenceLengths: List<Int> get() = methods.map { it.sequenceLength }

    /** The method that takes [length] tokens; refused when there is none (tokenizer.json is from another export). */
    fun method(length: Int): MethodSpec = methods.firstOrNull { it.sequenceLength == length }
        ?: throw IllegalArgumentException("the tokenizer made $length tokens but $name takes $sequenceLengths: " +
            "tokenizer.json and the model come from different exports")

    /** Refuse a tokenizer whose length buckets ([lengths], ascending) are not the model's. */
    fun requireLengths(lengths: List<Int>) {
        require(lengths == sequenceLengths) {
            "tokenizer.json is for lengths $lengths but $name takes $sequenceLengths tokens: the bundle mixes files " +
                "from different exports"
        }
    }
}

/** One input ready to feed: [ints] for int32 inputs, [floats] for float32 ones. */
class ModelInput(val spec: InputSpec, val ints: IntArray?, val floats: FloatArray?)

/**
 * manifest.json + labels.json of a bundle. [selfTestFile] / [selfTestSha256]: the manifest's "selftest" record (the
 * golden inputs of SelfTest.kt), null for bundles exported without one.
 */
class BundleSpec(
    val labels: List<String>,
    val artifacts: List<ArtifactSpec>,
    val maskValue: Float,
    val selfTestFile: String? = null,
    val selfTestSha256: String? = null
) {

    /** The artifact called [name], or the first valid one of [format] when [name] is null. */
    fun artifact(name: String?, format: String): ArtifactSpec {
        val found = if (name == null) artifacts.firstOrNull { it.format == format && it.valid }
        else artifacts.firstOrNull { it.name == name || it.file == name }
        return found ?: throw IllegalArgumentException(
            "no ${name ?: "valid $format"} artifact in manifest.json; it has: " +
                artifacts.joinToString { "${it.name} (${it.format}${if (it.valid) "" else ", NOT valid"})" }
        )
    }

    companion object {
        @Suppress("UNCHECKED_CAST")
        fun parse(manifestJson: String, labelsJson: String): BundleSpec {
            val labels = MiniJson.parse(labelsJson) as? List<Any?>
                ?: throw IllegalArgumentException("labels.json must be a JSON list of label names (index = class id)")
            val manifest = MiniJson.parse(manifestJson) as Map<String, Any?>
            val config = (manifest["student"] as? Map<String, Any?>)?.get("config") as? Map<String, Any?>
            val maskValue = (config?.get("mask_value") as? Double ?: 30.0).toFloat()
            fun specs(list: Any?) = (list as List<Map<String, Any?>>).map { input ->
                val shape = (input["shape"] as List<Double>).map { it.toInt() }.toIntArray()
                InputSpec(input["name"] as String, input["dtype"] as String, shape)
            }
            val artifacts = (manifest["artifacts"] as List<Map<String, Any?>>).map { record ->
                val inputs = specs(record["inputs"])
                val name = record["name"] as String
                // Length buckets: one method per length, shortest first (absent in bundles from before buckets).
                val methods = (record["methods"] as? List<Map<String, Any?>>)?.map { m ->
                    val method = MethodSpec(m["name"] as String, (m["sequence_length"] as Double).toInt(),
                                            specs(m["inputs"]))
                    for (spec in method.inputs) require(spec.shape.last() == method.sequenceLength) {
                        "manifest.json: method ${method.name} of $name has input ${spec.name} of shape " +
                            "${spec.shape.toList()}, not of length ${method.sequenceLength}"
                    }
                    method
                }?.sortedBy { it.sequenceLength }
                ArtifactSpec(name, record["file"] as String, record["format"] as String, record["delegate"] as String,
                             record["valid"] == true, inputs, record["sha256"] as? String,
                             if (methods.isNullOrEmpty()) singleMethod(inputs) else methods)
            }
            val selfTest = manifest["selftest"] as? Map<String, Any?>
            return BundleSpec(labels.map { it as String }, artifacts, maskValue, selfTest?.get("file") as? String,
                              selfTest?.get("sha256") as? String)
        }
    }
}

/** A bundle file the app refuses to load; the message names the file or manifest field and what to do. */
class BundleException(message: String) : IllegalArgumentException(message)

private const val INSIDE_ONLY = "refusing to load it (a manifest may only name files inside its bundle)"

/**
 * The artifact's "file" as a normalised path inside the bundle (e.g. "models/x.tflite"), after the checks that need
 * no file system: the record must say "valid": true, and the path must be relative and must not lead out of the
 * bundle with "..". [bundleName] names the bundle in messages (a folder, or the APK's assets/bundle).
 */
fun bundlePath(artifact: ArtifactSpec, bundleName: String): String {
    if (!artifact.valid) {
        throw BundleException("$bundleName/manifest.json: artifact '${artifact.name}' is marked \"valid\": false " +
            "(it failed the export's checks; see the bundle's report.md); refusing to load it: pick a valid " +
            "artifact or re-export the bundle")
    }
    val where = "$bundleName/manifest.json: artifact '${artifact.name}' has \"file\": \"${artifact.file}\""
    if (artifact.file == "") throw BundleException("$where, which is not a path inside the bundle; $INSIDE_ONLY")
    if (artifact.file.startsWith("/") || artifact.file.startsWith("\\") || File(artifact.file).isAbsolute) {
        throw BundleException("$where, an absolute path; $INSIDE_ONLY")
    }
    val parts = ArrayList<String>()
    for (part in artifact.file.split('/')) {
        when (part) {
            "", "." -> {}
            ".." -> if (parts.isEmpty()) {
                throw BundleException("$where, which leads out of the bundle folder $bundleName; $INSIDE_ONLY")
            } else parts.removeAt(parts.size - 1)
            else -> parts.add(part)
        }
    }
    return parts.joinToString("/")
}

/** Hex SHA-256 of everything [input] holds (java.security.MessageDigest). */
fun sha256Hex(input: InputStream): String {
    val digest = MessageDigest.getInstance("SHA-256")
    val buffer = ByteArray(1 shl 16)
    while (true) {
        val count = input.read(buffer)
        if (count < 0) break
        digest.update(buffer, 0, count)
    }
    return digest.digest().joinToString("") { "%02x".format(it.toInt() and 0xff) }
}

/**
 * The artifact's model file inside [bundleDir], checked before anything loads it: "valid": true, a path that stays
 * inside the bundle (no absolute path, no ".." or symlink leading out), and a SHA-256 equal to the manifest's.
 * Throws [BundleException] with the reason otherwise.
 */
fun verifyModelFile(bundleDir: File, artifact: ArtifactSpec): File {
    val relative = bundlePath(artifact, bundleDir.path)
    val root = bundleDir.canonicalFile
    val file = File(bundleDir, relative)
    val real = file.canonicalFile  // follows symlinks
    if (!real.toPath().startsWith(root.toPath())) {
        throw BundleException("${bundleDir.path}/manifest.json: artifact '${artifact.name}' has \"file\": " +
            "\"${artifact.file}\", which resolves to $real, outside the bundle folder ${bundleDir.path}; $INSIDE_ONLY")
    }
    if (!file.isFile) {
        throw BundleException("artifact ${artifact.name} is listed in the manifest but ${artifact.file} is missing")
    }
    val expected = artifact.sha256
    if (expected.isNullOrEmpty()) {
        throw BundleException("${bundleDir.path}/manifest.json: artifact '${artifact.name}' has no \"sha256\", so " +
            "$file cannot be verified; refusing to load it: re-export the bundle")
    }
    val actual = file.inputStream().use { sha256Hex(it) }
    if (actual != expected.toLowerCase()) {
        throw BundleException("$file: sha256 $actual does not match the manifest's $expected; the file is " +
            "corrupted or was replaced — re-export the bundle")
    }
    return file
}

/**
 * The model inputs for one tokenized text (XLNetTokenizer.encodeBucketed), for the method of its length
 * ([ArtifactSpec.method]), in that method's declared order and dtypes: input_ids, then attention_mask (int32,
 * 1 = token) OR mask_bias (float32: 0 on tokens, -maskValue on padding, as the host's toolkit.student.model_inputs
 * computes it), then token_type_ids (int32) for pair tasks. All int32, never int64.
 */
fun modelInputs(artifact: ArtifactSpec, encoded: Encoded, maskValue: Float): List<ModelInput> =
    modelInputs(artifact, artifact.method(encoded.inputIds.size), encoded, maskValue)

/** The inputs of [method] (one of [artifact]'s) for one tokenized text of its length. */
fun modelInputs(artifact: ArtifactSpec, method: MethodSpec, encoded: Encoded, maskValue: Float): List<ModelInput> =
    method.inputs.map { spec ->
        val length = spec.shape.last()
        require(encoded.inputIds.size == length) {
            "the tokenizer made ${encoded.inputIds.size} tokens but ${method.name ?: artifact.name} takes $length: " +
                "tokenizer.json and the model come from different exports"
        }
        val expected = if (spec.name == "mask_bias") "float32" else "int32"
        require(spec.dtype == expected) {
            "${artifact.name}: input ${spec.name} is ${spec.dtype}, this app builds $expected"
        }
        when (spec.name) {
            "input_ids" -> ModelInput(spec, encoded.inputIds, null)
            "attention_mask" -> ModelInput(spec, encoded.attentionMask, null)
            "token_type_ids" -> ModelInput(spec, encoded.tokenTypeIds, null)
            "mask_bias" -> {
                val bias = FloatArray(length) { (1.0f - encoded.attentionMask[it]) * -maskValue }
                ModelInput(spec, null, bias)
            }
            else -> throw IllegalArgumentException("${artifact.name} wants an input '${spec.name}', unknown to the app")
        }
    }

/** Softmax of the logits (for display; the label is the argmax either way). */
fun softmax(logits: FloatArray): FloatArray {
    val top = logits.fold(Float.NEGATIVE_INFINITY) { a, b -> maxOf(a, b) }
    val exps = logits.map { Math.exp((it - top).toDouble()) }
    val total = exps.sum()
    return FloatArray(logits.size) { (exps[it] / total).toFloat() }
}
