package org.xlnetedge.app

import android.content.Context
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.nnapi.NnApiDelegate
import org.xlnetedge.tokenizer.Encoded
import java.io.File
import java.io.FileInputStream
import java.io.IOException
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel

/** The bundle folder inside the APK's assets: manifest.json, labels.json, tokenizer.json, models/... */
const val BUNDLE_ASSETS = "bundle"

/**
 * Where a .tflite model runs. XNNPACK is LiteRT's optimised CPU path, the default (what the android-arm64 profile
 * exports and checks for); CPU is the plain reference kernels. NNAPI is the LEGACY path (android-nnapi bundles): it
 * hands the graph to the phone's NNAPI driver (ops it lacks fall back to the CPU kernels); NNAPI exists from Android
 * 8.1 (API 27) and is deprecated since Android 15 (API 35), so it is used only when asked for.
 */
enum class Backend { XNNPACK, CPU, NNAPI }

/** First API level with NNAPI 1.1, and the one that deprecates NNAPI (Android 15). */
const val NNAPI_MIN_API = 27
const val NNAPI_DEPRECATED_API = 35

/**
 * The backend to use when none is asked for: XNNPACK on the CPU, also for an NNAPI bundle's full-int8 model (XNNPACK
 * runs int8 models), so a phone without NNAPI works out of the box; plain CPU when the manifest says "cpu".
 */
fun defaultBackend(artifact: ArtifactSpec): Backend = when (artifact.delegate) {
    "cpu" -> Backend.CPU
    else -> Backend.XNNPACK
}

/**
 * [asked] (an intent extra: XNNPACK, CPU or NNAPI) checked against the device's [apiLevel], else [defaultBackend].
 * NNAPI below API 27 is refused; from API 35 on it still runs where the vendor keeps it, with a warning.
 */
fun chooseBackend(artifact: ArtifactSpec, asked: String?, apiLevel: Int, warn: (String) -> Unit): Backend {
    val backend = if (asked != null) Backend.valueOf(asked) else defaultBackend(artifact)
    if (backend == Backend.NNAPI) {
        require(apiLevel >= NNAPI_MIN_API) { "NNAPI needs Android 8.1 (API $NNAPI_MIN_API); this device is API $apiLevel" }
        if (apiLevel >= NNAPI_DEPRECATED_API) {
            warn("NNAPI is deprecated since Android 15 (API $NNAPI_DEPRECATED_API): prefer XNNPACK (the default)")
        }
    } else if (artifact.delegate == "nnapi") {
        warn("${artifact.name} was exported for the legacy NNAPI path; running it on $backend " +
            "(--es backend NNAPI uses NNAPI on devices that still have it, API $NNAPI_MIN_API-${NNAPI_DEPRECATED_API - 1})")
    }
    return backend
}

/**
 * One forward pass: tokenizer output in (XLNetTokenizer.encodeBucketed: its length is the bucket), one logit per
 * label out, from the model's method/signature for that length.
 */
interface Classifier : AutoCloseable {
    fun logits(input: Encoded): FloatArray
}

/** manifest.json and labels.json from the bundled assets. */
fun loadBundleSpec(context: Context): BundleSpec {
    fun read(name: String) = context.assets.open("$BUNDLE_ASSETS/$name").bufferedReader().use { it.readText() }
    return BundleSpec.parse(read("manifest.json"), read("labels.json"))
}

/** Copy a bundled asset to app storage once: LiteRT maps it and ExecuTorch needs a real file path. */
fun assetFile(context: Context, path: String): File {
    val out = File(context.filesDir, path)
    if (!out.exists()) {
        out.parentFile?.mkdirs()
        context.assets.open(path).use { input -> out.outputStream().use { input.copyTo(it) } }
    }
    return out
}

/**
 * The artifact's model as a file in app storage, checked before anything loads it ([verifyModelFile] in Bundle.kt:
 * "valid": true, a "file" that stays inside the bundle, and the manifest's SHA-256). LiteRT maps it and ExecuTorch
 * needs a real file path, so the asset is copied once; a copy left by an older APK that no longer matches the
 * manifest is copied again, and a bundled file that does not match is refused with the reason.
 */
fun verifiedModelFile(context: Context, artifact: ArtifactSpec): File {
    val relative = bundlePath(artifact, "assets/$BUNDLE_ASSETS")  // before copying: "file" cannot lead out
    val bundleDir = File(context.filesDir, BUNDLE_ASSETS)
    val copy = File(bundleDir, relative)
    if (copy.isFile) {
        try {
            return verifyModelFile(bundleDir, artifact)
        } catch (stale: BundleException) {
            // copied from an earlier bundle: copy it again below and check that
        }
    }
    copy.parentFile?.mkdirs()
    val partial = File(copy.path + ".partial")
    context.assets.open("$BUNDLE_ASSETS/$relative").use { input -> partial.outputStream().use { input.copyTo(it) } }
    if (!partial.renameTo(copy)) throw IOException("cannot write $copy")
    return verifyModelFile(bundleDir, artifact)
}

/**
 * LiteRT (TFLite) classifier. The model has one signature per length bucket (forward_16, forward_32, ...: the
 * manifest's "methods"; one signature for a record without them); a text runs in the signature of its length. Each
 * signature's inputs (args_0, args_1, ... in the exported order, as litert-torch names them) are fed with the inputs
 * the manifest declares for that method, checked against the model's own tensor types: int32 ids and masks, float32
 * mask_bias for the NNAPI bundle.
 */
class LiteRtClassifier(
    model: File,
    private val artifact: ArtifactSpec,
    private val maskValue: Float,
    backend: Backend,
    private val numLabels: Int
) : Classifier {
    /** A signature ready to run: its key, input names in the manifest's order, and output name. */
    private class Signature(val method: MethodSpec, val key: String, val inputNames: List<String>, val output: String)

    private val nnapi: NnApiDelegate? = if (backend == Backend.NNAPI) NnApiDelegate() else null
    private val interpreter: Interpreter
    private val signatures: Map<Int, Signature>  // by sequence length

    init {
        val options = Interpreter.Options().setNumThreads(4).setUseXNNPACK(backend == Backend.XNNPACK)
        nnapi?.let { options.addDelegate(it) }
        interpreter = Interpreter(mapModel(model), options)
        val keys = interpreter.signatureKeys.toList()
        require(keys.isNotEmpty()) { "${artifact.name} has no signature; re-export it with the toolkit" }
        signatures = artifact.methods.associate { method ->
            val key = method.name ?: keys.first()
            require(key in keys) {
                "${artifact.name} has no signature '$key' (it has $keys): the manifest does not describe this model"
            }
            val names = signatureOrder(method, interpreter.getSignatureInputs(key).toList())
            for ((name, spec) in names.zip(method.inputs)) {
                val type = interpreter.getInputTensorFromSignature(name, key).dataType()
                val expected = if (spec.dtype == "float32") DataType.FLOAT32 else DataType.INT32
                require(type == expected) { "model input $name of $key is $type but the manifest says $spec" }
            }
            method.sequenceLength to Signature(method, key, names, interpreter.getSignatureOutputs(key).first())
        }
    }

    /** The signature's input names in the manifest's order: by name when they match, else by their _N suffix. */
    private fun signatureOrder(method: MethodSpec, names: List<String>): List<String> {
        val manifestNames = method.inputs.map { it.name }
        require(names.size == manifestNames.size) {
            "${artifact.name} has inputs $names, the manifest lists $manifestNames"
        }
        if (names.toSet() == manifestNames.toSet()) return manifestNames
        return names.sortedBy { it.substringAfterLast('_').toIntOrNull() ?: throw IllegalArgumentException(
            "cannot match the model's inputs $names to the manifest's $manifestNames") }
    }

    override fun logits(input: Encoded): FloatArray {
        val signature = signatures.getValue(artifact.method(input.inputIds.size).sequenceLength)
        val inputs = HashMap<String, Any>()
        val values = modelInputs(artifact, signature.method, input, maskValue)
        for ((name, value) in signature.inputNames.zip(values)) inputs[name] = toBuffer(value)
        val output = Array(1) { FloatArray(numLabels) }
        interpreter.runSignature(inputs, mapOf<String, Any>(signature.output to output), signature.key)
        return output[0]
    }

    override fun close() {
        interpreter.close()
        nnapi?.close()
    }

    private fun mapModel(file: File): MappedByteBuffer =
        FileInputStream(file).channel.use { it.map(FileChannel.MapMode.READ_ONLY, 0, it.size()) }

    /** A direct buffer in native byte order: 4 bytes per value, int32 or float32 as the input's dtype says. */
    private fun toBuffer(value: ModelInput): ByteBuffer {
        val count = value.ints?.size ?: value.floats!!.size
        val buffer = ByteBuffer.allocateDirect(count * 4).order(ByteOrder.nativeOrder())
        value.ints?.forEach { buffer.putInt(it) }
        value.floats?.forEach { buffer.putFloat(it) }
        buffer.rewind()
        return buffer
    }
}

/**
 * ExecuTorch classifier for the bundle's .pte (lowered to XNNPACK at export time). The program has one method per
 * length bucket (forward_16, forward_32, ...: the manifest's "methods"; "forward" for a record without them); every
 * method is loaded up front and a text runs in the method of its length. Inputs are int32 [1, L] (and float32
 * mask_bias when the manifest says so), exactly the dtypes the program was exported with: int64 would be rejected.
 */
class ExecuTorchClassifier(
    model: File,
    private val artifact: ArtifactSpec,
    private val maskValue: Float
) : Classifier {
    private val module: Module = Module.load(model.absolutePath)

    init {
        for (method in artifact.methods) {
            val name = method.name ?: "forward"
            val status = module.loadMethod(name)
            require(status == 0) {
                "cannot prepare method '$name' of ${artifact.name} (error $status): a method the manifest lists is " +
                    "missing, or the AAR lacks one of its operators"
            }
        }
    }

    override fun logits(input: Encoded): FloatArray {
        val method = artifact.method(input.inputIds.size)
        val values = modelInputs(artifact, method, input, maskValue).map { value ->
            val shape = value.spec.shapeLong
            val ints = value.ints
            EValue.from(if (ints != null) Tensor.fromBlob(ints, shape) else Tensor.fromBlob(value.floats!!, shape))
        }
        return module.execute(method.name ?: "forward", *values.toTypedArray())[0].toTensor().dataAsFloatArray
    }

    override fun close() = module.destroy()
}
